// The one build script of both binaries: see the included file.
include!("../crates/warren-host/build_commit.rs");
