//! The probe test plugin, identity `warden.tests.Probe`. Each route
//! exercises one facility of the host (private and shared storage, expiry,
//! standard output, logging, handler errors and panics) and replies with
//! the outcome, so that tests can drive the host through chat messages.

include!("probe.rs");

probe_plugin!(Probe, "warden.tests.Probe");
