//! Operating exchange: `exchangectl`, the control-plane client (status,
//! capacity limits, breakers, debug tracing, drain — changed live, never by
//! restart), and deployment files for running the example app one component
//! per process.
//!
//! Nothing lives here yet: the transport issue adds the control socket and the
//! deploy files, later issues the rest of `exchangectl`.
