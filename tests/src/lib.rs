//! End-to-end tests live in `tests/tests/`: they put the load generator, the file formats,
//! the replay and the engine together the way a user does. (Tests against a real broker
//! join them with the Kafka services.)
