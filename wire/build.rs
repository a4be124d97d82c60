//! Builds the libzmq every drover binary links: libzmq 4.3.4 from the `zeromq-src` crate's
//! sources (fetched from crates.io like any crate, not copied into this repository), with
//! CURVE on Debian's static libsodium, linked statically together with libstdc++.
//!
//! Why not the `zmq` crate's own vendored build: it leaves CURVE out
//! (`../shared/DEPENDENCIES.md`). Why not Debian's shared libzmq5: it drags in libpgm,
//! libnorm, the Kerberos libraries and a shared libstdc++, about 5 MiB of resident pages
//! per process, which kept the idle minion above its 8 MB budget (issue 2). This build has
//! none of those transports, so a binary needs only libc and libgcc_s at run time.
//!
//! `.cargo/config.toml` overrides the `zmq` link key, so `zmq-sys`'s build script (the
//! CURVE-less libzmq) never runs and this one provides the library instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let sodium =
        pkg_config::Config::new().statik(true).cargo_metadata(false).probe("libsodium").unwrap_or_else(|e| {
            panic!("libsodium not found ({e}); run scripts/deps.sh (apt-get install libsodium-dev)")
        });
    let sodium_lib =
        sodium.link_paths.first().cloned().unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    let sodium_include =
        sodium.include_paths.first().cloned().unwrap_or_else(|| PathBuf::from("/usr/include"));
    if !sodium_lib.join("libsodium.a").exists() {
        panic!(
            "{} has no libsodium.a; run scripts/deps.sh (apt-get install libsodium-dev)",
            sodium_lib.display()
        );
    }

    // zeromq-src prints its own link lines (`static=zmq`, bundled into this crate's rlib).
    // A bundled archive is only searched where this crate falls in the link order, which
    // for unrelated crates is not fixed, so an unoptimised build could miss `zmq_*`
    // symbols the `zmq` crate references later. Its lines are discarded and replaced by
    // unbundled ones below, which rustc passes after every Rust library.
    silenced(|| {
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

/// The folder holding `libstdc++.a`, as the C++ compiler reports it. A folder of its own
/// under OUT_DIR with only that file, so `-L` does not also expose gcc's other libraries.
fn static_libstdcpp(out: &Path) -> PathBuf {
    let cxx = env::var("CXX").unwrap_or_else(|_| "c++".into());
    let found = Command::new(&cxx)
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

/// Runs `f` with this process's standard output sent to /dev/null, so the cargo
/// directives it prints are not seen by cargo.
fn silenced(f: impl FnOnce()) {
    use std::io::Write;
    std::io::stdout().flush().expect("flush stdout");
    let saved = nix::unistd::dup(std::io::stdout()).expect("dup stdout");
    let null = fs::OpenOptions::new().write(true).open("/dev/null").expect("open /dev/null");
    nix::unistd::dup2_stdout(&null).expect("redirect stdout");
    f();
    std::io::stdout().flush().expect("flush stdout");
    nix::unistd::dup2_stdout(&saved).expect("restore stdout");
}
