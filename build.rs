//! Generates the protobuf message types from `proto/` into OUT_DIR with the
//! pure-Rust parser, so building needs no `protoc`.

fn main() {
    protobuf_codegen::Codegen::new()
        .pure()
        .includes(["proto"])
        .input("proto/chaintable.proto")
        .cargo_out_dir("protos")
        .run_from_script();
    println!("cargo:rerun-if-changed=proto/chaintable.proto");
}
