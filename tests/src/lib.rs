//! starling-tests
