//! Function discovery: see the crate description.
