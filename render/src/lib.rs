//! roles and states: parse, render with Tera, validate, plan (pure, no I/O)
