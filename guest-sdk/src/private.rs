//! Glue between the `#[plugin]` attribute and the component's exports.
//!
//! Everything here is used by generated code only and may change in any
//! release.

use std::fmt::Display;

use crate::__bindings::Capture;
use crate::__bindings::warden::plugin::types::{
    Manifest as WitManifest, Message as WitMessage, Route as WitRoute, RouteKind as WitRouteKind,
    Schedule as WitSchedule,
};
use crate::{Message, Plugin};

/// Which messages a route is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `#[respond_to]`
    RespondTo,
    /// `#[listen_to]`
    ListenTo,
}

/// One route as declared in the plugin's source.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// Which messages the route sees.
    pub kind: RouteKind,
    /// The regular expression.
    pub pattern: &'static str,
    /// Whether to match without regard to case.
    pub ignore_case: bool,
    /// The handler method's name.
    pub handler: &'static str,
    /// The first line of the handler's doc comment.
    pub doc: &'static str,
}

/// One schedule as declared in the plugin's source.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleSpec {
    /// The cron expression.
    pub cron: &'static str,
    /// The channel its messages go to, if the schedule names one.
    pub channel: Option<&'static str>,
    /// The handler method's name.
    pub handler: &'static str,
    /// The first line of the handler's doc comment.
    pub doc: &'static str,
}

/// The manifest as declared in the plugin's source.
#[derive(Debug, Clone, Copy)]
pub struct ManifestSpec {
    /// The plugin's identity.
    pub id: &'static str,
    /// The plugin's version.
    pub version: &'static str,
    /// One line for operators.
    pub description: &'static str,
    /// The routes, in declaration order.
    pub routes: &'static [RouteSpec],
    /// The schedules, in declaration order.
    pub schedules: &'static [ScheduleSpec],
    /// The settings the plugin cannot run without.
    pub required_settings: &'static [&'static str],
}

/// Implemented by `#[plugin]`: the manifest and the route dispatch.
pub trait Dispatch: Plugin {
    /// The plugin's manifest.
    const MANIFEST: ManifestSpec;

    /// Calls the handler of `route`; `None` if there is no such route.
    fn dispatch(
        &self,
        route: u32,
        msg: &Message,
        captures: &Captures,
    ) -> Option<Result<(), String>>;

    /// Calls the handler of `schedule`; `None` if there is no such
    /// schedule.
    fn run_schedule(&self, schedule: u32) -> Option<Result<(), String>>;
}

/// The named groups of a match.
#[derive(Debug, Clone, Default)]
pub struct Captures(Vec<Capture>);

impl Captures {
    /// Wraps the captures the host passed.
    pub fn new(captures: Vec<Capture>) -> Self {
        Captures(captures)
    }

    /// The text of group `name`, `None` if it did not take part in the
    /// match (or the host did not send it).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|capture| capture.name == name)
            .and_then(|capture| capture.value.as_deref())
    }
}

/// Types a handler parameter can have after `msg: &Message`.
#[diagnostic::on_unimplemented(
    message = "a handler parameter cannot have type `{Self}`",
    label = "use `String`, `&str` or `Option<String>`",
    note = "parameters after `msg: &Message` receive the named group of the same name"
)]
pub trait FromCapture<'a>: Sized {
    /// Converts the group's text, `None` when the group did not take part
    /// in the match.
    fn from_capture(value: Option<&'a str>) -> Self;
}

impl<'a> FromCapture<'a> for String {
    fn from_capture(value: Option<&'a str>) -> Self {
        value.unwrap_or_default().to_owned()
    }
}

impl<'a> FromCapture<'a> for &'a str {
    fn from_capture(value: Option<&'a str>) -> Self {
        value.unwrap_or_default()
    }
}

impl<'a> FromCapture<'a> for Option<String> {
    fn from_capture(value: Option<&'a str>) -> Self {
        value.map(str::to_owned)
    }
}

impl<'a> FromCapture<'a> for Option<&'a str> {
    fn from_capture(value: Option<&'a str>) -> Self {
        value
    }
}

/// Return types a handler can have.
#[diagnostic::on_unimplemented(
    message = "a handler cannot return `{Self}`",
    label = "return `()` or `Result<(), E>` where `E: Display`"
)]
pub trait IntoHandlerResult {
    /// The result the host receives: `Err` text is logged by the host.
    fn into_handler_result(self) -> Result<(), String>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), String> {
        self.map_err(|error| error.to_string())
    }
}

/// The `manifest` export.
pub fn manifest<P: Dispatch>() -> WitManifest {
    let spec = P::MANIFEST;
    WitManifest {
        id: spec.id.to_owned(),
        version: spec.version.to_owned(),
        description: spec.description.to_owned(),
        routes: spec
            .routes
            .iter()
            .map(|route| WitRoute {
                kind: match route.kind {
                    RouteKind::RespondTo => WitRouteKind::RespondTo,
                    RouteKind::ListenTo => WitRouteKind::ListenTo,
                },
                pattern: route.pattern.to_owned(),
                ignore_case: route.ignore_case,
                handler: route.handler.to_owned(),
                doc: route.doc.to_owned(),
            })
            .collect(),
        schedules: spec
            .schedules
            .iter()
            .map(|schedule| WitSchedule {
                cron: schedule.cron.to_owned(),
                channel: schedule.channel.map(str::to_owned),
                handler: schedule.handler.to_owned(),
                doc: schedule.doc.to_owned(),
            })
            .collect(),
        required_settings: spec
            .required_settings
            .iter()
            .map(|name| (*name).to_owned())
            .collect(),
    }
}

/// The `handle` export.
pub fn handle<P: Dispatch>(
    plugin: &P,
    route: u32,
    message: WitMessage,
    captures: Vec<Capture>,
) -> Result<(), String> {
    let message = Message::from_wit(message);
    let captures = Captures::new(captures);
    plugin
        .dispatch(route, &message, &captures)
        .unwrap_or_else(|| {
            Err(format!(
                "plugin {} has no route {route} (it declares {})",
                P::MANIFEST.id,
                P::MANIFEST.routes.len()
            ))
        })
}

/// The `run-schedule` export.
pub fn run_schedule<P: Dispatch>(plugin: &P, schedule: u32) -> Result<(), String> {
    plugin.run_schedule(schedule).unwrap_or_else(|| {
        Err(format!(
            "plugin {} has no schedule {schedule} (it declares {})",
            P::MANIFEST.id,
            P::MANIFEST.schedules.len()
        ))
    })
}

/// Exports `$plugin`, which implements [`Dispatch`], as the component's
/// `manifest`, `handle` and `run-schedule` functions. The plugin value is
/// created with `Default::default()` on the first call and kept for the
/// following ones.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct __WardenGuest;

            impl $crate::__bindings::Guest for __WardenGuest {
                fn manifest() -> $crate::__bindings::Manifest {
                    $crate::__private::manifest::<$plugin>()
                }

                fn handle(
                    route: u32,
                    message: $crate::__bindings::Message,
                    captures: ::std::vec::Vec<$crate::__bindings::Capture>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    PLUGIN
                        .with(|plugin| $crate::__private::handle(plugin, route, message, captures))
                }

                fn run_schedule(schedule: u32) -> ::std::result::Result<(), ::std::string::String> {
                    PLUGIN.with(|plugin| $crate::__private::run_schedule(plugin, schedule))
                }
            }

            ::std::thread_local! {
                static PLUGIN: $plugin = <$plugin as ::std::default::Default>::default();
            }

    $crate::__bindings::export!(__WardenGuest with_types_in $crate::__bindings);
        };
    };
}

#[cfg(test)]
// The plugin attribute expands to the component's export glue, which is
// `unsafe` by nature.
#[allow(unsafe_code)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn captures(pairs: &[(&str, Option<&str>)]) -> Captures {
        Captures::new(
            pairs
                .iter()
                .map(|(name, value)| Capture {
                    name: (*name).to_owned(),
                    value: value.map(str::to_owned),
                })
                .collect(),
        )
    }

    fn message(text: &str) -> WitMessage {
        WitMessage {
            text: text.to_owned(),
            sender: crate::__bindings::warden::plugin::types::Sender {
                id: "U1".to_owned(),
                name: None,
            },
            channel: "C1".to_owned(),
            addressed: true,
            id: None,
            thread: None,
        }
    }

    #[test]
    fn captures_are_found_by_name() {
        let captures = captures(&[("key", Some("greeting")), ("text", None)]);
        assert_eq!(captures.get("key"), Some("greeting"));
        assert_eq!(captures.get("text"), None);
        assert_eq!(captures.get("missing"), None);
    }

    #[test]
    fn parameters_receive_captures_by_type() {
        assert_eq!(String::from_capture(Some("a")), "a");
        assert_eq!(String::from_capture(None), "");
        assert_eq!(<&str>::from_capture(Some("b")), "b");
        assert_eq!(<&str>::from_capture(None), "");
        assert_eq!(
            Option::<String>::from_capture(Some("c")),
            Some("c".to_owned())
        );
        assert_eq!(Option::<String>::from_capture(None), None);
        assert_eq!(Option::<&str>::from_capture(Some("")), Some(""));
    }

    #[test]
    fn handler_results_keep_the_error_text() {
        assert_eq!(().into_handler_result(), Ok(()));
        assert_eq!(Ok::<(), &str>(()).into_handler_result(), Ok(()));
        assert_eq!(
            Err::<(), _>("probe asked to fail").into_handler_result(),
            Err("probe asked to fail".to_owned())
        );
        let error = crate::Error::AccessDenied("no grant".into());
        assert_eq!(
            Err::<(), _>(error).into_handler_result(),
            Err("access denied: no grant".to_owned())
        );
    }

    /// A plugin written with the attribute, driven through the same
    /// functions the component's exports call.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
    }

    #[crate::plugin(
        id = "warden.sdk.Recorder",
        description = "Records its calls",
        version = "9.9.9",
        required_settings = ["TOKEN", "ROOM"]
    )]
    impl Recorder {
        /// set KEY to VALUE: records
        /// a setting
        ///
        /// Only the first paragraph goes into the manual, as one line.
        #[respond_to(r"set (?P<key>\w+) to (?P<value>.*)")]
        fn set(&self, msg: &Message, key: String, value: &str) {
            self.calls
                .borrow_mut()
                .push(format!("set {key}={value} from {}", msg.user()));
        }

        #[listen_to(r"(?i)maybe (?<word>\w+)?", ignore_case = false)]
        #[respond_to(r"perhaps(?: (?P<word>\w+))?")]
        fn maybe(&self, msg: &Message, word: Option<String>) -> Result<(), String> {
            self.calls
                .borrow_mut()
                .push(format!("maybe {word:?} in {}", msg.channel()));
            match word {
                Some(_) => Ok(()),
                None => Err("no word".to_owned()),
            }
        }

        #[respond_to(r"fail")]
        fn fail(&self, _msg: &Message) -> crate::Result<()> {
            Err(crate::Error::QuotaExceeded("over 1 MiB".into()))
        }

        fn not_a_handler(&self) -> usize {
            self.calls.borrow().len()
        }

        /// tick: records the time
        #[schedule("*/5 * * * * *", channel = "general")]
        #[schedule("0 9 * * mon")]
        fn tick(&self) {
            self.calls.borrow_mut().push("tick".to_owned());
        }
    }

    #[test]
    fn the_manifest_carries_docs_schedules_and_required_settings() {
        let manifest = manifest::<Recorder>();
        assert_eq!(manifest.required_settings, ["TOKEN", "ROOM"]);
        assert_eq!(
            manifest.routes[0].doc,
            "set KEY to VALUE: records a setting"
        );
        assert_eq!(manifest.routes[1].doc, "");
        let schedules: Vec<_> = manifest
            .schedules
            .iter()
            .map(|s| {
                (
                    s.cron.as_str(),
                    s.channel.as_deref(),
                    s.handler.as_str(),
                    s.doc.as_str(),
                )
            })
            .collect();
        assert_eq!(
            schedules,
            [
                (
                    "*/5 * * * * *",
                    Some("general"),
                    "tick",
                    "tick: records the time"
                ),
                ("0 9 * * mon", None, "tick", "tick: records the time"),
            ]
        );
        let plugin = Recorder::default();
        assert_eq!(run_schedule(&plugin, 1), Ok(()));
        assert!(
            run_schedule(&plugin, 2)
                .unwrap_err()
                .contains("no schedule 2")
        );
        assert_eq!(*plugin.calls.borrow(), ["tick"]);
    }

    #[test]
    fn the_manifest_lists_routes_in_declaration_order() {
        let manifest = manifest::<Recorder>();
        assert_eq!(manifest.id, "warden.sdk.Recorder");
        assert_eq!(manifest.version, "9.9.9");
        assert_eq!(manifest.description, "Records its calls");
        let routes: Vec<_> = manifest
            .routes
            .iter()
            .map(|r| {
                (
                    r.kind,
                    r.pattern.as_str(),
                    r.ignore_case,
                    r.handler.as_str(),
                )
            })
            .collect();
        assert_eq!(
            routes,
            [
                (
                    WitRouteKind::RespondTo,
                    r"set (?P<key>\w+) to (?P<value>.*)",
                    true,
                    "set"
                ),
                (
                    WitRouteKind::ListenTo,
                    r"(?i)maybe (?<word>\w+)?",
                    false,
                    "maybe"
                ),
                (
                    WitRouteKind::RespondTo,
                    r"perhaps(?: (?P<word>\w+))?",
                    true,
                    "maybe"
                ),
                (WitRouteKind::RespondTo, "fail", true, "fail"),
            ]
        );
    }

    #[test]
    fn handle_passes_captures_to_the_parameters_of_the_same_name() {
        let plugin = Recorder::default();
        let set = captures(&[("value", Some("hello world")), ("key", Some("greeting"))]);
        assert_eq!(
            handle(&plugin, 0, message("set greeting to hello world"), set.0),
            Ok(())
        );
        let word = captures(&[("word", Some("so"))]);
        assert_eq!(handle(&plugin, 1, message("maybe so"), word.0), Ok(()));
        let no_word = captures(&[("word", None)]);
        assert_eq!(
            handle(&plugin, 2, message("perhaps"), no_word.0),
            Err("no word".to_owned())
        );
        assert_eq!(
            *plugin.calls.borrow(),
            [
                "set greeting=hello world from U1",
                "maybe Some(\"so\") in C1",
                "maybe None in C1"
            ]
        );
        assert_eq!(plugin.not_a_handler(), 3);
    }

    #[test]
    fn handle_reports_handler_errors_and_unknown_routes() {
        let plugin = Recorder::default();
        assert_eq!(
            handle(&plugin, 3, message("fail"), Vec::new()),
            Err("quota exceeded: over 1 MiB".to_owned())
        );
        assert_eq!(
            handle(&plugin, 4, message("fail"), Vec::new()),
            Err("plugin warden.sdk.Recorder has no route 4 (it declares 4)".to_owned())
        );
    }

    #[test]
    fn missing_captures_become_empty_strings() {
        let plugin = Recorder::default();
        assert_eq!(handle(&plugin, 0, message("set"), Vec::new()), Ok(()));
        assert_eq!(*plugin.calls.borrow(), ["set = from U1"]);
    }
}
