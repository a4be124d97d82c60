//! the drover command line
