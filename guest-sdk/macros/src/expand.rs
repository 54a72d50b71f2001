//! The expansion of `#[plugin(...)]`.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, LitBool, LitStr, Meta, Pat,
    ReturnType, Token, Type,
};

use crate::pattern::capture_names;

/// Expands the attribute. Errors are reported as `compile_error!`s next to
/// the impl block, with its route attributes removed, so that the rest of
/// the crate still type-checks.
pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = match parse_args(args) {
        Ok(args) => Some(args),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let mut block: ItemImpl = match syn::parse2(item.clone()) {
        Ok(block) => block,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[plugin] goes on the inherent impl block of the plugin type: \
                 `#[plugin(id = \"...\")] impl MyPlugin { ... }`",
            )
            .to_compile_error();
            return quote!(#error #item);
        }
    };
    if let Some((_, path, _)) = &block.trait_ {
        errors.push(syn::Error::new_spanned(
            path,
            "#[plugin] goes on an inherent impl block (`impl MyPlugin { ... }`), not on a trait impl",
        ));
    }
    if !block.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &block.generics,
            "a plugin type cannot be generic: the component exports one concrete type",
        ));
    }

    let mut routes = Vec::new();
    let mut schedules = Vec::new();
    for item in &mut block.items {
        if let ImplItem::Fn(method) = item {
            let declared = take_route_attrs(&mut method.attrs, &mut errors);
            let timed = take_schedule_attrs(&mut method.attrs, &mut errors);
            if declared.is_empty() && timed.is_empty() {
                continue;
            }
            let doc = doc_line(&method.attrs);
            if !declared.is_empty() && !timed.is_empty() {
                errors.push(syn::Error::new_spanned(
                    &method.sig.ident,
                    "a method is either a route (`#[respond_to]`, `#[listen_to]`) or a schedule \
                     (`#[schedule]`), not both: a scheduled call has no message",
                ));
                continue;
            }
            if !timed.is_empty() {
                if let Some(ident) = check_scheduled(method, &mut errors) {
                    for schedule in timed {
                        schedules.push((schedule, ident.clone(), doc.clone()));
                    }
                }
                continue;
            }
            if let Some(handler) = Handler::parse(method, &mut errors) {
                for route in declared {
                    handler.check_params(&route, &mut errors);
                    routes.push((route, handler.clone(), doc.clone()));
                }
            }
        }
    }

    let (Some(args), true) = (args, errors.is_empty()) else {
        let errors = errors.into_compile_errors();
        return quote!(#errors #block);
    };
    let self_ty = &block.self_ty;
    let id = &args.id;
    let description = match &args.description {
        Some(description) => description.to_token_stream(),
        None => quote!(""),
    };
    let version = match &args.version {
        Some(version) => version.to_token_stream(),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };
    let specs = routes.iter().map(|(route, handler, doc)| {
        let kind = Ident::new(route.kind.variant(), Span::call_site());
        let pattern = &route.pattern;
        let ignore_case = route.ignore_case;
        let name = handler.ident.unraw().to_string();
        quote! {
            ::warden_sdk::__private::RouteSpec {
                kind: ::warden_sdk::__private::RouteKind::#kind,
                pattern: #pattern,
                ignore_case: #ignore_case,
                handler: #name,
                doc: #doc,
            }
        }
    });
    let arms = routes.iter().enumerate().map(|(index, (_, handler, _))| {
        let index = u32::try_from(index).expect("fewer than 2^32 routes");
        let call = handler.call();
        quote!(#index => ::core::option::Option::Some(#call),)
    });
    let schedule_specs = schedules.iter().map(|(schedule, ident, doc)| {
        let cron = &schedule.cron;
        let channel = match &schedule.channel {
            Some(channel) => quote!(::core::option::Option::Some(#channel)),
            None => quote!(::core::option::Option::None),
        };
        let name = ident.unraw().to_string();
        quote! {
            ::warden_sdk::__private::ScheduleSpec {
                cron: #cron,
                channel: #channel,
                handler: #name,
                doc: #doc,
            }
        }
    });
    let schedule_arms = schedules.iter().enumerate().map(|(index, (_, ident, _))| {
        let index = u32::try_from(index).expect("fewer than 2^32 schedules");
        quote! {
            #index => ::core::option::Option::Some(
                ::warden_sdk::__private::IntoHandlerResult::into_handler_result(Self::#ident(self))
            ),
        }
    });
    let required = &args.required_settings;

    quote! {
        #block

        impl ::warden_sdk::Plugin for #self_ty {}

        impl ::warden_sdk::__private::Dispatch for #self_ty {
            const MANIFEST: ::warden_sdk::__private::ManifestSpec =
                ::warden_sdk::__private::ManifestSpec {
                    id: #id,
                    version: #version,
                    description: #description,
                    routes: &[#(#specs),*],
                    schedules: &[#(#schedule_specs),*],
                    required_settings: &[#(#required),*],
                };

            fn dispatch(
                &self,
                route: u32,
                msg: &::warden_sdk::Message,
                captures: &::warden_sdk::__private::Captures,
            ) -> ::core::option::Option<::core::result::Result<(), ::std::string::String>> {
                let _ = (msg, captures);
                match route {
                    #(#arms)*
                    _ => ::core::option::Option::None,
                }
            }

            fn run_schedule(
                &self,
                schedule: u32,
            ) -> ::core::option::Option<::core::result::Result<(), ::std::string::String>> {
                match schedule {
                    #(#schedule_arms)*
                    _ => ::core::option::Option::None,
                }
            }
        }

        ::warden_sdk::__export_plugin!(#self_ty);
    }
}

/// The arguments of `#[plugin(...)]`.
struct PluginArgs {
    id: LitStr,
    description: Option<LitStr>,
    version: Option<LitStr>,
    required_settings: Vec<LitStr>,
}

fn parse_args(args: TokenStream) -> syn::Result<PluginArgs> {
    let mut id = None;
    let mut description = None;
    let mut version = None;
    let mut required_settings: Option<Vec<LitStr>> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("required_settings") {
            if required_settings.is_some() {
                return Err(meta.error("this argument is given twice"));
            }
            let list: syn::ExprArray = meta.value()?.parse()?;
            let mut names = Vec::new();
            for element in list.elems {
                match element {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(name),
                        ..
                    }) => names.push(name),
                    other => {
                        return Err(syn::Error::new_spanned(
                            other,
                            "a required setting is a string: `required_settings = [\"API_KEY\"]`",
                        ));
                    }
                }
            }
            required_settings = Some(names);
            return Ok(());
        }
        let slot = if meta.path.is_ident("id") {
            &mut id
        } else if meta.path.is_ident("description") {
            &mut description
        } else if meta.path.is_ident("version") {
            &mut version
        } else {
            return Err(meta.error(
                "unknown argument: expected `id`, `description`, `version` or `required_settings`",
            ));
        };
        if slot.is_some() {
            return Err(meta.error("this argument is given twice"));
        }
        *slot = Some(meta.value()?.parse::<LitStr>()?);
        Ok(())
    });
    parser.parse2(args)?;
    let id = id.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "missing the plugin's identity: write `#[warden_sdk::plugin(id = \"example.my.Plugin\")]`",
        )
    })?;
    Ok(PluginArgs {
        id,
        description,
        version,
        required_settings: required_settings.unwrap_or_default(),
    })
}

/// The first paragraph of a method's doc comment, its lines joined by
/// spaces; empty without one. It is the route's or schedule's line in the
/// help manual.
fn doc_line(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter_map(|attr| match &attr.meta {
            Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }) => Some(text.value()),
                _ => None,
            },
            _ => None,
        })
        // `split`, not `lines`: an empty `///` line is an empty string,
        // and it ends the paragraph.
        .flat_map(|text| {
            text.split('\n')
                .map(|line| line.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    lines
        .iter()
        .skip_while(|line| line.is_empty())
        .take_while(|line| !line.is_empty())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `#[schedule("cron", channel = "...")]`.
struct ScheduleAttr {
    cron: LitStr,
    channel: Option<LitStr>,
}

/// Removes the `#[schedule]` attributes from `attrs` and returns what they
/// declare, in order.
fn take_schedule_attrs(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Vec<ScheduleAttr> {
    let mut schedules = Vec::new();
    attrs.retain(|attr| {
        if !attr.path().is_ident("schedule") {
            return true;
        }
        match parse_schedule(attr) {
            Ok(schedule) => schedules.push(schedule),
            Err(error) => errors.push(error),
        }
        false
    });
    schedules
}

fn parse_schedule(attr: &Attribute) -> syn::Result<ScheduleAttr> {
    let missing = || {
        syn::Error::new_spanned(
            attr,
            "missing cron expression: write `#[schedule(\"0 9 * * mon-fri\")]` \
             (minute hour day-of-month month day-of-week, in UTC)",
        )
    };
    let Meta::List(list) = &attr.meta else {
        return Err(missing());
    };
    let parser = |input: ParseStream<'_>| -> syn::Result<ScheduleAttr> {
        if !input.peek(LitStr) {
            return Err(missing());
        }
        let cron: LitStr = input.parse()?;
        let fields = cron.value().split_whitespace().count();
        if !(5..=7).contains(&fields) {
            return Err(syn::Error::new_spanned(
                &cron,
                format!(
                    "a cron expression has 5 fields (minute hour day-of-month month day-of-week), \
                     6 (seconds first) or 7 (a year last); this one has {fields}"
                ),
            ));
        }
        let mut channel = None;
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let name: Ident = input.parse()?;
            if name != "channel" || channel.is_some() {
                return Err(syn::Error::new_spanned(
                    name,
                    "a schedule takes a cron expression, then optionally `channel = \"...\"`",
                ));
            }
            input.parse::<Token![=]>()?;
            channel = Some(input.parse()?);
        }
        Ok(ScheduleAttr { cron, channel })
    };
    parser.parse2(list.tokens.clone())
}

/// Checks that a scheduled method takes `&self` only; returns its name.
fn check_scheduled(method: &ImplItemFn, errors: &mut Errors) -> Option<Ident> {
    let sig = &method.sig;
    let mut inputs = sig.inputs.iter();
    let receiver_ok = matches!(
        inputs.next(),
        Some(FnArg::Receiver(receiver))
            if receiver.reference.is_some() && receiver.mutability.is_none()
    );
    if !receiver_ok || inputs.next().is_some() || sig.asyncness.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.ident,
            "a scheduled handler takes `&self` only, and is not async: `fn name(&self)`; \
             it sends with `warden_sdk::say`",
        ));
        return None;
    }
    Some(sig.ident.clone())
}

/// Which attribute declared a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    RespondTo,
    ListenTo,
}

impl Kind {
    fn of(attr: &Attribute) -> Option<Kind> {
        let path = attr.path();
        if path.is_ident("respond_to") {
            Some(Kind::RespondTo)
        } else if path.is_ident("listen_to") {
            Some(Kind::ListenTo)
        } else {
            None
        }
    }

    fn attr_name(self) -> &'static str {
        match self {
            Kind::RespondTo => "respond_to",
            Kind::ListenTo => "listen_to",
        }
    }

    fn variant(self) -> &'static str {
        match self {
            Kind::RespondTo => "RespondTo",
            Kind::ListenTo => "ListenTo",
        }
    }
}

/// One `#[respond_to(...)]` or `#[listen_to(...)]`.
#[derive(Clone)]
struct Route {
    kind: Kind,
    pattern: LitStr,
    ignore_case: bool,
    groups: Vec<String>,
}

/// The arguments inside the parentheses of a route attribute: a pattern,
/// then optionally `ignore_case = <bool>`.
struct RouteArgs {
    pattern: Option<LitStr>,
    ignore_case: Option<LitBool>,
}

impl Parse for RouteArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let pattern = if input.peek(LitStr) {
            Some(input.parse()?)
        } else {
            None
        };
        let mut ignore_case = None;
        let mut first = pattern.is_none();
        while !input.is_empty() {
            if !first {
                input.parse::<Token![,]>()?;
                if input.is_empty() {
                    break;
                }
            }
            first = false;
            let name: Ident = input.parse()?;
            if name != "ignore_case" {
                return Err(syn::Error::new_spanned(
                    name,
                    "unknown argument: a route takes a pattern, then optionally `ignore_case = false`",
                ));
            }
            if ignore_case.is_some() {
                return Err(syn::Error::new_spanned(
                    name,
                    "`ignore_case` is given twice",
                ));
            }
            input.parse::<Token![=]>()?;
            ignore_case = Some(input.parse()?);
        }
        Ok(RouteArgs {
            pattern,
            ignore_case,
        })
    }
}

/// Removes the route attributes from `attrs` and returns the routes they
/// declare, in order.
fn take_route_attrs(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Vec<Route> {
    let mut routes = Vec::new();
    attrs.retain(|attr| {
        let Some(kind) = Kind::of(attr) else {
            return true;
        };
        match parse_route(kind, attr) {
            Ok(route) => routes.push(route),
            Err(error) => errors.push(error),
        }
        false
    });
    routes
}

fn parse_route(kind: Kind, attr: &Attribute) -> syn::Result<Route> {
    let name = kind.attr_name();
    let missing = || {
        syn::Error::new_spanned(
            attr,
            format!(
                "missing pattern: write `#[{name}(r\"regex\")]`, for example `#[{name}(r\"^hello (?P<name>\\w+)\")]`"
            ),
        )
    };
    let Meta::List(list) = &attr.meta else {
        return Err(missing());
    };
    let args: RouteArgs = list.parse_args()?;
    let pattern = args.pattern.ok_or_else(missing)?;
    let groups = capture_names(&pattern.value()).map_err(|reason| {
        syn::Error::new_spanned(&pattern, format!("cannot read this pattern: {reason}"))
    })?;
    Ok(Route {
        kind,
        pattern,
        ignore_case: args.ignore_case.is_none_or(|flag| flag.value),
        groups,
    })
}

/// A handler method: its name and the parameters that receive captures.
#[derive(Clone)]
struct Handler {
    ident: Ident,
    params: Vec<Param>,
    output: Span,
}

#[derive(Clone)]
struct Param {
    name: String,
    pat: Pat,
    ty: Type,
}

impl Handler {
    fn parse(method: &ImplItemFn, errors: &mut Errors) -> Option<Handler> {
        let sig = &method.sig;
        let before = errors.len();
        if let Some(asyncness) = &sig.asyncness {
            errors.push(syn::Error::new_spanned(
                asyncness,
                "a handler cannot be async",
            ));
        }
        if !sig.generics.params.is_empty() {
            errors.push(syn::Error::new_spanned(
                &sig.generics,
                "a handler cannot be generic",
            ));
        }
        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(receiver))
                if receiver.reference.is_some() && receiver.mutability.is_none() => {}
            _ => {
                errors.push(syn::Error::new_spanned(
                    &sig.ident,
                    "a handler takes `&self` first: `fn name(&self, msg: &Message, ...)`",
                ));
                return None;
            }
        }
        if inputs.next().is_none() {
            errors.push(syn::Error::new_spanned(
                &sig.ident,
                "a handler takes the message after `&self`: `fn name(&self, msg: &Message, ...)`",
            ));
        }
        let mut params = Vec::new();
        for input in inputs {
            let FnArg::Typed(typed) = input else { continue };
            match &*typed.pat {
                Pat::Ident(binding) if binding.by_ref.is_none() && binding.subpat.is_none() => {
                    params.push(Param {
                        name: binding.ident.unraw().to_string(),
                        pat: (*typed.pat).clone(),
                        ty: (*typed.ty).clone(),
                    });
                }
                other => errors.push(syn::Error::new_spanned(
                    other,
                    "name this parameter like the named group it receives, e.g. `key: String` for `(?P<key>...)`",
                )),
            }
        }
        let output = match &sig.output {
            ReturnType::Default => sig.ident.span(),
            ReturnType::Type(_, ty) => ty.span(),
        };
        (errors.len() == before).then(|| Handler {
            ident: sig.ident.clone(),
            params,
            output,
        })
    }

    /// Reports each parameter whose name is not a named group of `route`.
    fn check_params(&self, route: &Route, errors: &mut Errors) {
        for param in &self.params {
            if route.groups.contains(&param.name) {
                continue;
            }
            let pattern = route.pattern.value();
            let groups = if route.groups.is_empty() {
                "it has no named groups".to_owned()
            } else {
                let names: Vec<String> = route.groups.iter().map(|g| format!("`{g}`")).collect();
                format!("its named groups are {}", names.join(", "))
            };
            let name = &param.name;
            errors.push(syn::Error::new_spanned(
                &param.pat,
                format!(
                    "`{name}` is not a named group of the pattern {pattern:?} ({groups}); \
                     add `(?P<{name}>...)` to the pattern or rename the parameter"
                ),
            ));
        }
    }

    /// The expression that calls the handler inside `Dispatch::dispatch`.
    /// Conversions carry the span of the parameter's type, or of the return
    /// type, so that a type the SDK cannot handle is reported there; the
    /// variables of `dispatch` keep the macro's own span.
    fn call(&self) -> TokenStream {
        let method = &self.ident;
        let args = self.params.iter().map(|param| {
            let ty = &param.ty;
            let name = &param.name;
            let convert = quote_spanned! {ty.span()=>
                <#ty as ::warden_sdk::__private::FromCapture<'_>>::from_capture
            };
            quote!(#convert(captures.get(#name)))
        });
        let finish = quote_spanned! {self.output=>
            ::warden_sdk::__private::IntoHandlerResult::into_handler_result
        };
        quote!(#finish(Self::#method(self, msg, #(#args),*)))
    }
}

/// Errors collected while reading the impl block, reported together.
#[derive(Default)]
struct Errors(Vec<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        self.0.push(error);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_compile_errors(self) -> TokenStream {
        self.0
            .into_iter()
            .map(|error| error.to_compile_error())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn expand_str(args: &str, item: &str) -> syn::File {
        let output = expand(args.parse().unwrap(), item.parse().unwrap());
        syn::parse2(output).expect("the expansion is a list of items")
    }

    /// The messages of the `compile_error!`s in the expansion.
    fn errors(args: &str, item: &str) -> Vec<String> {
        expand_str(args, item)
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Macro(mac)
                    if mac.mac.path.segments.last().unwrap().ident == "compile_error" =>
                {
                    Some(mac.mac.parse_body::<syn::LitStr>().unwrap().value())
                }
                _ => None,
            })
            .collect()
    }

    fn single_error(args: &str, item: &str) -> String {
        let mut errors = errors(args, item);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.remove(0)
    }

    const ID: &str = r#"id = "example.test.Plugin""#;

    #[test]
    fn a_valid_plugin_expands_without_errors() {
        let item = r#"
            impl P {
                /// Stores text.
                #[respond_to(r"store (?P<text>.*) under (?P<key>\w+)")]
                fn store(&self, msg: &Message, text: String, key: &str) -> Result<()> { Ok(()) }
                #[listen_to("^ping (?P<who>.+)$", ignore_case = false)]
                #[respond_to("^ping(?: (?<who>\\w+))?$",)]
                fn ping(&self, _msg: &Message, who: Option<String>) {}
                fn helper(&self) {}
            }
        "#;
        assert_eq!(errors(ID, item), Vec::<String>::new());
        let text = expand_str(
            &format!(r#"{ID}, description = "d", version = "1.2.3""#),
            item,
        )
        .into_token_stream_string();
        assert!(
            !text.contains("respond_to ("),
            "route attributes are removed: {text}"
        );
        assert!(
            !text.contains("listen_to ("),
            "route attributes are removed: {text}"
        );
        assert!(
            text.contains("# [doc = \" Stores text.\"]"),
            "other attributes stay: {text}"
        );
        for expected in [
            "RouteKind :: RespondTo",
            "RouteKind :: ListenTo",
            "ignore_case : false",
            "handler : \"ping\"",
            "version : \"1.2.3\"",
            "description : \"d\"",
            "captures . get (\"who\")",
            "__export_plugin ! (P)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
    }

    #[test]
    fn routes_keep_declaration_order() {
        let text = expand_str(
            ID,
            r#"impl P {
                #[respond_to("b")] fn b(&self, m: &Message) {}
                #[respond_to("a")] #[listen_to("c")] fn a(&self, m: &Message) {}
            }"#,
        )
        .into_token_stream_string();
        let b = text.find("pattern : \"b\"").unwrap();
        let a = text.find("pattern : \"a\"").unwrap();
        let c = text.find("pattern : \"c\"").unwrap();
        assert!(b < a && a < c, "{text}");
        assert!(text.contains("0u32 => "), "{text}");
        assert!(text.contains("2u32 => "), "{text}");
    }

    #[test]
    fn the_version_defaults_to_the_crate_version() {
        let text = expand_str(ID, "impl P {}").into_token_stream_string();
        assert!(text.contains("env ! (\"CARGO_PKG_VERSION\")"), "{text}");
    }

    #[test]
    fn a_parameter_must_name_a_group() {
        let error = single_error(
            ID,
            r#"impl P {
                #[respond_to(r"retrieve (?P<key>\w+)")]
                fn retrieve(&self, msg: &Message, name: String) {}
            }"#,
        );
        assert!(error.contains("`name` is not a named group"), "{error}");
        assert!(error.contains("its named groups are `key`"), "{error}");
    }

    #[test]
    fn every_route_of_a_method_must_have_the_parameter_s_group() {
        let error = single_error(
            ID,
            r#"impl P {
                #[respond_to(r"get (?P<key>\w+)")]
                #[respond_to(r"list")]
                fn get(&self, msg: &Message, key: Option<String>) {}
            }"#,
        );
        assert!(
            error.contains("\"list\" (it has no named groups)"),
            "{error}"
        );
    }

    #[test]
    fn raw_identifiers_name_groups_without_the_prefix() {
        let item = r#"impl P {
            #[respond_to(r"(?P<type>\w+)")]
            fn kind(&self, msg: &Message, r#type: String) {}
        }"#;
        assert!(errors(ID, item).is_empty());
    }

    #[test]
    fn a_route_needs_a_pattern() {
        for attr in [
            "#[respond_to]",
            "#[respond_to()]",
            "#[listen_to(ignore_case = false)]",
        ] {
            let item = format!("impl P {{ {attr} fn f(&self, msg: &Message) {{}} }}");
            let error = single_error(ID, &item);
            assert!(error.starts_with("missing pattern"), "{attr}: {error}");
        }
    }

    #[test]
    fn unknown_route_arguments_are_errors() {
        let error = single_error(
            ID,
            r#"impl P { #[respond_to("x", case = true)] fn f(&self, m: &Message) {} }"#,
        );
        assert!(error.contains("unknown argument"), "{error}");
    }

    #[test]
    fn unreadable_patterns_are_errors() {
        let error = single_error(
            ID,
            r#"impl P { #[respond_to("(?P<a>x)(?P<a>y)")] fn f(&self, m: &Message) {} }"#,
        );
        assert!(error.contains("`a` is used twice"), "{error}");
    }

    #[test]
    fn the_id_is_required() {
        let error = single_error(r#"description = "d""#, "impl P {}");
        assert!(
            error.starts_with("missing the plugin's identity"),
            "{error}"
        );
    }

    #[test]
    fn unknown_and_repeated_plugin_arguments_are_errors() {
        let error = single_error(&format!(r#"{ID}, name = "x""#), "impl P {}");
        assert!(error.contains("unknown argument"), "{error}");
        let error = single_error(&format!(r#"{ID}, {ID}"#), "impl P {}");
        assert!(error.contains("given twice"), "{error}");
    }

    #[test]
    fn handler_signatures_are_checked() {
        let cases = [
            ("fn f(msg: &Message) {}", "takes `&self` first"),
            ("fn f(&mut self, msg: &Message) {}", "takes `&self` first"),
            ("fn f(&self) {}", "takes the message after `&self`"),
            ("async fn f(&self, msg: &Message) {}", "cannot be async"),
            ("fn f<T>(&self, msg: &Message) {}", "cannot be generic"),
            (
                "fn f(&self, msg: &Message, (a, b): (String, String)) {}",
                "name this parameter",
            ),
        ];
        for (method, expected) in cases {
            let item = format!("impl P {{ #[respond_to(\"(?P<a>.)(?P<b>.)\")] {method} }}");
            let error = single_error(ID, &item);
            assert!(error.contains(expected), "{method}: {error}");
        }
    }

    #[test]
    fn only_inherent_impl_blocks_are_accepted() {
        let error = single_error(ID, "impl Default for P {}");
        assert!(error.contains("not on a trait impl"), "{error}");
        let error = single_error(ID, "impl<T> P<T> {}");
        assert!(error.contains("cannot be generic"), "{error}");
        let error = single_error(ID, "struct P;");
        assert!(error.contains("goes on the inherent impl block"), "{error}");
    }

    trait TokenString {
        fn into_token_stream_string(self) -> String;
    }

    impl TokenString for syn::File {
        fn into_token_stream_string(self) -> String {
            quote::ToTokens::into_token_stream(self).to_string()
        }
    }
}
