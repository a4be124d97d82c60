//! A redis for tests, in memory, speaking RESP through the app's own `coins::resp`: the
//! commands the app sends (keys do not expire). The machine need not have redis-server.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use coins::resp::{self, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
enum Entry {
    Text(Vec<u8>),
    List(VecDeque<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
}

type Data = Arc<Mutex<HashMap<Vec<u8>, Entry>>>;

pub struct FakeRedis {
    pub addr: SocketAddr,
    data: Data,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRedis {
    pub async fn start() -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data = Data::default();
        let shared = data.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        FakeRedis { addr, data, task }
    }

    /// The number a counter holds (0 when missing).
    pub fn counter(&self, key: &str) -> i64 {
        match self.data.lock().unwrap().get(key.as_bytes()) {
            Some(Entry::Text(t)) => String::from_utf8_lossy(t).parse().unwrap(),
            _ => 0,
        }
    }

    /// The keys that start with `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let data = self.data.lock().unwrap();
        let mut keys: Vec<String> = data
            .keys()
            .filter(|k| k.starts_with(prefix.as_bytes()))
            .map(|k| String::from_utf8_lossy(k).into())
            .collect();
        keys.sort();
        keys
    }

    /// How many members a set has.
    pub fn members(&self, key: &str) -> usize {
        match self.data.lock().unwrap().get(key.as_bytes()) {
            Some(Entry::Set(s)) => s.len(),
            _ => 0,
        }
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, data: Data) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Some((request, used))) = resp::parse(&buf) {
            buf.drain(..used);
            let reply = execute(&data, &request);
            let mut out = Vec::new();
            resp::encode(&reply, &mut out);
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn execute(data: &Data, request: &Value) -> Value {
    let Some(words) = request.items() else { return err("expected an array of bulk strings") };
    let args: Vec<Vec<u8>> =
        words.iter().filter_map(|w| if let Value::Bulk(b) = w { Some(b.clone()) } else { None }).collect();
    if args.is_empty() || args.len() != words.len() {
        return err("expected an array of bulk strings");
    }
    let name = String::from_utf8_lossy(&args[0]).to_uppercase();
    let a = &args[1..];
    let mut data = data.lock().unwrap();
    let int = |b: &[u8]| String::from_utf8_lossy(b).parse::<i64>().ok();
    match (name.as_str(), a.len()) {
        ("PING", 0) => Value::Simple("PONG".into()),
        ("GET", 1) => match data.get(&a[0]) {
            Some(Entry::Text(t)) => Value::Bulk(t.clone()),
            Some(_) => wrong_type(),
            None => Value::Nil,
        },
        ("SET", 2 | 4) => {
            data.insert(a[0].clone(), Entry::Text(a[1].clone()));
            Value::Simple("OK".into())
        }
        ("MGET", n) if n > 0 => Value::Array(
            a.iter()
                .map(|k| match data.get(k) {
                    Some(Entry::Text(t)) => Value::Bulk(t.clone()),
                    _ => Value::Nil,
                })
                .collect(),
        ),
        ("INCR", 1) => {
            let now = match data.get(&a[0]) {
                None => 0,
                Some(Entry::Text(t)) => match int(t) {
                    Some(n) => n,
                    None => return err("value is not an integer or out of range"),
                },
                Some(_) => return wrong_type(),
            } + 1;
            data.insert(a[0].clone(), Entry::Text(now.to_string().into_bytes()));
            Value::Int(now)
        }
        ("SADD", n) if n >= 2 => {
            let entry = data.entry(a[0].clone()).or_insert_with(|| Entry::Set(BTreeSet::new()));
            let Entry::Set(set) = entry else { return wrong_type() };
            Value::Int(a[1..].iter().filter(|m| set.insert(m.to_vec())).count() as i64)
        }
        ("LPUSH", n) if n >= 2 => {
            let entry = data.entry(a[0].clone()).or_insert_with(|| Entry::List(VecDeque::new()));
            let Entry::List(list) = entry else { return wrong_type() };
            for item in &a[1..] {
                list.push_front(item.clone());
            }
            Value::Int(list.len() as i64)
        }
        ("LTRIM", 3) | ("LRANGE", 3) => {
            let (Some(start), Some(stop)) = (int(&a[1]), int(&a[2])) else {
                return err("value is not an integer or out of range");
            };
            let list = match data.get_mut(&a[0]) {
                Some(Entry::List(list)) => list,
                Some(_) => return wrong_type(),
                None if name == "LTRIM" => return Value::Simple("OK".into()),
                None => return Value::Array(vec![]),
            };
            let len = list.len() as i64;
            let at = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
            let (from, to) = (at(start), (at(stop) + 1).min(len));
            let kept: VecDeque<Vec<u8>> = if from < to {
                list.range(from as usize..to as usize).cloned().collect()
            } else {
                VecDeque::new()
            };
            if name == "LTRIM" {
                *list = kept;
                Value::Simple("OK".into())
            } else {
                Value::Array(kept.into_iter().map(Value::Bulk).collect())
            }
        }
        ("DEL", n) if n > 0 => Value::Int(a.iter().filter(|k| data.remove(*k).is_some()).count() as i64),
        ("KEYS", 1) => {
            let pattern = String::from_utf8_lossy(&a[0]).into_owned();
            let Some(prefix) = pattern.strip_suffix('*') else {
                return err("this fake knows only prefix* patterns");
            };
            let mut keys: Vec<Vec<u8>> =
                data.keys().filter(|k| k.starts_with(prefix.as_bytes())).cloned().collect();
            keys.sort();
            Value::Array(keys.into_iter().map(Value::Bulk).collect())
        }
        _ => err(&format!("unknown command '{name}' with {} arguments", a.len())),
    }
}

fn err(message: &str) -> Value {
    Value::Error(format!("ERR {message}"))
}

fn wrong_type() -> Value {
    Value::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
}
