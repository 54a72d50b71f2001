//! The probe test plugin under a second identity, `warden.tests.ProbeB`,
//! to check that plugins are isolated from each other. Its behaviour is the
//! probe's, from the same source file.

include!("../../probe/src/probe.rs");

probe_plugin!(ProbeB, "warden.tests.ProbeB");
