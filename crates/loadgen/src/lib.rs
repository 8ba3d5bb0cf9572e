//! The trendwatch load generator (being written).

pub mod truth;
