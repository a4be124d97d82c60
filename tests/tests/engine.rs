//! `fleet::docker::Docker` against the real engine, in a [`Scope`]: every object the test
//! makes carries its fleet label and is removed when it ends, passed or failed.

use std::collections::BTreeMap;
use std::time::Duration;

use fleet::Engine;
use fleet::docker::Docker;
use fleet::engine::{ContainerSpec, ContainerState, FileIn, LABEL_FLEET, Labels, Mount};
use tests::docker::{Scope, required};

/// A root file system of one file, as an uncompressed tar.
fn tiny_rootfs(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("rootfs.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(6);
    b.append_data(&mut h, "hello", &b"hello\n"[..]).unwrap();
    b.finish().unwrap();
    path
}

#[tokio::test]
async fn images_networks_volumes_and_containers_round_trip() {
    if !required() {
        return;
    }
    let scope = Scope::new("engine");
    let docker = Docker::connect().await.unwrap();
    let info = docker.info().await.unwrap();
    assert!(info.cpus >= 1, "{info:?}");

    let fleet = scope.fleet.clone();
    let labels: Labels = BTreeMap::from([(LABEL_FLEET.to_string(), fleet.clone())]);
    let filter = scope.label();
    let tmp = tempfile::tempdir().unwrap();
    let tag = format!("{fleet}:1");

    // a rootfs imported with labels
    let image = docker.import_rootfs(&tiny_rootfs(tmp.path()), &tag, &labels).await.unwrap();
    assert_eq!(image.labels.get(LABEL_FLEET), Some(&fleet));
    assert!(image.tags.contains(&tag), "{image:?}");
    let listed = docker.images(&[&filter]).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(docker.image(&format!("{fleet}:nope")).await.unwrap().is_none());

    // a network, with the gateway containers reach the host at
    let net = docker.create_network(&fleet, &labels).await.unwrap();
    assert!(net.gateway.is_some(), "{net:?}");
    assert_eq!(docker.networks(&[&filter]).await.unwrap().len(), 1);

    // a volume
    let vol = docker.create_volume(&format!("{fleet}-data"), &labels).await.unwrap();
    assert_eq!(docker.volumes(&[&filter]).await.unwrap(), vec![vol.clone()]);

    // a container with a file copied in before it starts
    let spec = ContainerSpec {
        name: format!("{fleet}-c-1"),
        image: tag.clone(),
        command: vec!["/hello".into()],
        hostname: format!("{fleet}-c-1"),
        env: BTreeMap::from([("A".into(), "b".into())]),
        labels: labels.clone(),
        network: fleet.clone(),
        aliases: vec!["c".into()],
        networks: Vec::new(),
        mounts: vec![Mount { volume: vol.name.clone(), target: "/data".into() }],
        publish: vec![],
        cpus: Some(0.5),
        memory: Some(64 << 20),
        reserve_cpus: Some(0.25),
        reserve_memory: Some(32 << 20),
        constraints: Vec::new(),
        files: vec![FileIn { path: "/etc/drover/key".into(), mode: 0o600, data: b"secret".to_vec() }],
        stop_timeout: Duration::from_secs(3),
    };
    let id = docker.create(&spec).await.unwrap();
    let c = docker.container(&spec.name).await.unwrap().unwrap();
    assert_eq!(c.id, id);
    assert_eq!(c.state, ContainerState::Created);
    assert_eq!(c.image, tag);
    // reservations on one engine: a CPU share (1024 a CPU) and a soft memory limit
    let host = tests::docker::docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.CpuShares}} {{.HostConfig.MemoryReservation}} {{.HostConfig.NanoCpus}}",
        &id,
    ]);
    assert_eq!(host.trim(), format!("256 {} 500000000", 32 << 20));
    let listed = docker.containers(&[&filter]).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, spec.name);
    // the same name again is a conflict, not a second container
    let again = docker.create(&spec).await.unwrap_err();
    assert!(matches!(again, fleet::EngineError::Conflict { .. }), "{again}");
    docker.remove(&id).await.unwrap();
    assert!(docker.container(&spec.name).await.unwrap().is_none());
}
