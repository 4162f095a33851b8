//! Protobuf messages generated at build time from `proto/chaintable.proto`
//! (see `build.rs`), re-exported flat so callers write `proto::Request`.

include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));

pub use self::chaintable::*;
