fn main() {
    // Never unload libmemkit.so: blocks it handed out outlive any dlclose.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Resolve our own references to our own symbols (no PLT hops inside).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
}
