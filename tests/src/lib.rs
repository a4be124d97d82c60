//! end-to-end tests that drive the real drover binaries
