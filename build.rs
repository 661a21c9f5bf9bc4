//! Compiles the C++ shim that catches DuckDB's exceptions around the C API
//! calls that allocate (see `csrc/api_guard.cpp`).

fn main() {
    println!("cargo:rerun-if-changed=csrc/api_guard.cpp");
    cc::Build::new()
        .cpp(true)
        .file("csrc/api_guard.cpp")
        .flag_if_supported("-std=c++17")
        .warnings(true)
        .compile("layercorr_api_guard");
}
