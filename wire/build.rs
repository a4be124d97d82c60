//! Builds the libzmq every drover binary links: libzmq 4.3.4 from the `zeromq-src` crate's
//! sources (fetched from crates.io like any crate, not copied into this repository), with
//! CURVE on Debian's static libsodium, linked statically together with libstdc++.
//!
//! Why not the `zmq` crate's own vendored build: it leaves CURVE out. Why not Debian's shared libzmq5: it drags in libpgm,
//! libnorm, the Kerberos libraries and a shared libstdc++, about 5 MiB of resident pages
//! per process, which kept the idle minion above its 8 MB budget (issue 2). This build has
//! none of those transports, so a binary needs only libc and libgcc_s at run time.
//!
//! `.cargo/config.toml` overrides the `zmq` link key, so `zmq-sys`'s build script (the
//! CURVE-less libzmq) never runs and this one provides the library instead.

use std::path::{Path, PathBuf};
use std::{env, fs};

/// The targets `.cargo/config.toml` has a `zmq` link override for.
const OVERRIDDEN_TARGETS: [&str; 2] = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").expect("cargo sets TARGET");
    if !OVERRIDDEN_TARGETS.contains(&target.as_str()) {
        panic!(
            "building for {target}: add a [target.{target}.zmq] entry to .cargo/config.toml \
             (as for x86_64), or zmq-sys links its own libzmq without CURVE"
        );
    }

    let (sodium_lib, sodium_include) = libsodium();
    // zeromq-src prints its own link lines (`static=zmq`, bundled into this crate's rlib).
    // A bundled archive is only searched where this crate falls in the link order, which
    // for unrelated crates is not fixed, so an unoptimised build could miss `zmq_*`
    // symbols the `zmq` crate references later. Its lines are discarded and replaced by
    // unbundled ones below, which rustc passes after every Rust library.
    tune_libzmq(&out, &target);
    silenced(&out.join("zeromq-src.out"), || {
        zeromq_src::Build::new()
            .with_libsodium(Some(zeromq_src::LibLocation::new(&sodium_lib, &sodium_include)))
            .build();
    });

    let zmq_lib = out.join("lib");
    assert!(zmq_lib.join("libzmq.a").exists(), "zeromq-src built no libzmq.a");
    println!("cargo:rustc-link-search=native={}", zmq_lib.display());
    println!("cargo:rustc-link-search=native={}", sodium_lib.display());
    println!("cargo:rustc-link-lib=static:-bundle=zmq");
    println!("cargo:rustc-link-lib=static:-bundle=sodium");
    let stdcpp = static_libstdcpp(&out);
    println!("cargo:rustc-link-search=native={}", stdcpp.display());
    println!("cargo:rustc-link-lib=static:-bundle=stdc++");
}

/// Messages a libzmq message pipe grows by: one chunk of this many 64-byte message slots.
/// libzmq's own is 256 (16 KiB), tuned for throughput. A master holds two pipes for every
/// connected minion, each with a chunk and a spare that fill as messages flow, so at
/// 10,000 minions those chunks were most of its memory per minion (issue 7: 70.7 KiB a
/// minion against 45). 32 messages (2 KiB) cost one allocation every 32 messages instead
/// of 256; drover's messages are few per connection (a job, its return, a heartbeat).
const MESSAGE_PIPE_GRANULARITY: u32 = 32;

/// What libzmq's own build (CMake, autotools) finds on Linux and zeromq-src leaves out:
/// its `platform.hpp` is empty and it defines only a few `ZMQ_HAVE_*` itself. Without
/// these, libzmq silently ignores every TCP keepalive option (the master relies on the
/// kernel's keepalive to end dead connections), signals its mailboxes through a pair of
/// Unix sockets instead of one eventfd (two descriptors per zmq socket, and slower), and
/// makes its sockets and epoll instances close-on-exec only after the fact, if at all
/// (the minion forks daemons).
const LINUX_FEATURES: &[&str] = &[
    "ZMQ_HAVE_LINUX",
    "ZMQ_HAVE_SO_KEEPALIVE",
    "ZMQ_HAVE_TCP_KEEPCNT",
    "ZMQ_HAVE_TCP_KEEPIDLE",
    "ZMQ_HAVE_TCP_KEEPINTVL",
    "ZMQ_HAVE_EVENTFD",
    "ZMQ_HAVE_EVENTFD_CLOEXEC",
    "ZMQ_HAVE_SOCK_CLOEXEC",
    "ZMQ_HAVE_O_CLOEXEC",
    "HAVE_ACCEPT4",
    "ZMQ_IOTHREAD_POLLER_USE_EPOLL_CLOEXEC",
    "HAVE_CLOCK_GETTIME",
];

/// Settles what zeromq-src cannot be told: [`LINUX_FEATURES`] and
/// [`MESSAGE_PIPE_GRANULARITY`], through a header forced in front of every source file
/// (`-include`, through the C++ flags `cc` reads for this target). The granularity is a
/// constant of an enum in libzmq's `config.hpp`, not a macro, so it cannot be passed as a
/// define: the header reads `config.hpp` first with the constant under another name, then
/// makes the constant's name a macro for the new value; `config.hpp`'s include guard
/// keeps the sources from reading it again.
#[allow(unsafe_code)] // set_var: see the SAFETY note
fn tune_libzmq(out: &Path, target: &str) {
    let header = "drover-libzmq-tuning.hpp";
    let features: String = LINUX_FEATURES.iter().map(|f| format!("#define {f} 1\n")).collect();
    let text = format!(
        "// Written by wire/build.rs: see LINUX_FEATURES and MESSAGE_PIPE_GRANULARITY there.\n\
         #if defined(__cplusplus) && !defined(DROVER_LIBZMQ_TUNING_HPP)\n\
         #define DROVER_LIBZMQ_TUNING_HPP\n\
         #ifdef __linux__\n\
         {features}\
         #endif\n\
         #define message_pipe_granularity libzmq_own_message_pipe_granularity\n\
         #include \"config.hpp\"\n\
         #undef message_pipe_granularity\n\
         #define message_pipe_granularity {MESSAGE_PIPE_GRANULARITY}\n\
         #endif\n"
    );
    fs::write(out.join(header), text).expect("write the libzmq tuning header to OUT_DIR");
    // zeromq-src puts OUT_DIR on the include path (for its platform.hpp), where `-include`
    // finds the header. cc adds up the flags of every CXXFLAGS variable; this one is the
    // target's own, kept with whatever it held.
    let var = format!("CXXFLAGS_{target}");
    let flags = match env::var(&var) {
        Ok(own) => format!("{own} -include {header}"),
        Err(_) => format!("-include {header}"),
    };
    // SAFETY: a build script's single thread; nothing else reads the environment meanwhile.
    unsafe { env::set_var(&var, flags) };
}

/// libsodium's library and include folders, from pkg-config; the static library must be
/// there.
fn libsodium() -> (PathBuf, PathBuf) {
    let missing = |e: &dyn std::fmt::Display| -> ! {
        panic!("libsodium not found ({e}); run scripts/deps.sh (apt-get install libsodium-dev)")
    };
    let variable =
        |name| pkg_config::get_variable("libsodium", name).map(PathBuf::from).unwrap_or_else(|e| missing(&e));
    let (lib, include) = (variable("libdir"), variable("includedir"));
    if !lib.join("libsodium.a").exists() {
        missing(&format!("{} has no libsodium.a", lib.display()));
    }
    (lib, include)
}

/// The folder holding `libstdc++.a`, as the C++ compiler (the one the `cc` crate picks, as
/// for libzmq) reports it. A folder of its own under OUT_DIR with only that file, so `-L`
/// does not also expose gcc's other libraries.
fn static_libstdcpp(out: &Path) -> PathBuf {
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let cxx = compiler.path().display().to_string();
    let found = compiler
        .to_command()
        .arg("-print-file-name=libstdc++.a")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cxx} to find libstdc++.a: {e}"));
    let path = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    if !path.is_absolute() || !path.exists() {
        panic!("{cxx} does not know libstdc++.a (got {:?}); run scripts/deps.sh (apt-get install g++)", path);
    }
    let dir = out.join("stdcpp");
    let link = dir.join("libstdc++.a");
    fs::create_dir_all(&dir).expect("create OUT_DIR/stdcpp");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&path, &link).expect("link libstdc++.a into OUT_DIR");
    dir
}

/// Runs `f` with this process's standard output sent to the file `log`, so the cargo
/// directives it prints are not seen by cargo. Its `rerun-if-env-changed` lines (CXX,
/// CXXFLAGS...) are passed on; if `f` fails, its whole output (the compiler's errors) is
/// shown.
fn silenced(log: &Path, f: impl FnOnce() + std::panic::UnwindSafe) {
    use std::io::Write;
    std::io::stdout().flush().expect("flush stdout");
    let saved = nix::unistd::dup(std::io::stdout()).expect("dup stdout");
    let file = fs::File::create(log).expect("create a log file in OUT_DIR");
    nix::unistd::dup2_stdout(&file).expect("redirect stdout");
    let result = std::panic::catch_unwind(f);
    std::io::stdout().flush().expect("flush stdout");
    nix::unistd::dup2_stdout(&saved).expect("restore stdout");
    let output = fs::read_to_string(log).unwrap_or_default();
    for line in output.lines().filter(|l| l.starts_with("cargo:rerun-if-env-changed=")) {
        println!("{line}");
    }
    if let Err(panic) = result {
        eprintln!("building libzmq failed; its build printed:\n{output}");
        std::panic::resume_unwind(panic);
    }
}
