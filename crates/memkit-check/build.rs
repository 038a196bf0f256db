fn main() {
    // Never unload the library: blocks it handed out outlive any dlclose.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Our own calls bind to our own symbols; the mem*/str* interceptors
    // tell our calls from the program's by the thread's `busy` count.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    // The soname, as for libmemkit.so (the package installs both alike).
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets it");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmemkit_check.so.{major}");
    // The hot code together (see hot.ld).
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    println!("cargo:rerun-if-changed=hot.ld");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{dir}/hot.ld");
}
