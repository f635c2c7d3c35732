//! The Kubernetes REST surface: URL parsing, verbs, subresources and content negotiation. Each
//! request is parsed here, served by the registry, and rendered by `response`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use petset_api::kinds::old_versions::{self, OldVersion};
use petset_api::patch::PatchType;
use petset_api::resources::{self, ResourceType};
use petset_api::selector::{FieldSelector, LabelSelector};
use petset_api::{ApiError, Cause};
use serde_json::{Value, json};

use crate::ApiState;
use crate::discovery;
use crate::registry::{
    DeleteOptions, Deleted, FieldValidation, Filters, Manager, Scope, check_shape,
};
use crate::response::{self, Rendering};
use crate::watch::{self, WatchEvent, WatchRequest, bookmark_object};

/// Request bodies above this are refused (upstream's limit).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The parsed query string; repeated keys keep every value.
pub struct Query(Vec<(String, String)>);

/// A boolean query parameter as upstream reads it: absent, `0` or `false` (any case) is false,
/// any other value (`true`, `True` as Python's clients send, `1`, even empty) is true.
pub(crate) fn query_bool(value: Option<&str>) -> bool {
    value.is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Every value of a repeated key, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        query_bool(self.get(key))
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {text:?}"))),
        }
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun").is_some_and(|v| v == "All")
    }
}

/// The options kind upstream validates a write's query against, by method.
fn options_kind(method: &Method) -> Option<&'static str> {
    match *method {
        Method::POST => Some("CreateOptions"),
        Method::PUT => Some("UpdateOptions"),
        Method::PATCH => Some("PatchOptions"),
        Method::DELETE => Some("DeleteOptions"),
        _ => None,
    }
}

/// `dryRun` accepts only `All`, as upstream's options validation says: any other value is
/// refused before anything is written (it used to be taken as a real write).
pub fn check_dry_run<'a>(
    kind: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let values: Vec<&str> = values.into_iter().collect();
    if values.iter().all(|v| *v == "All") {
        return Ok(());
    }
    let rendered: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    let cause = Cause {
        reason: "FieldValueNotSupported",
        field: "dryRun".into(),
        message: format!(
            "Unsupported value: []string{{{}}}: supported values: \"All\"",
            rendered.join(", ")
        ),
    };
    Err(ApiError::invalid(kind, "meta.k8s.io", "", vec![cause]))
}

/// What a resource URL names.
struct Target<'a> {
    resource: &'static ResourceType,
    /// The old version the URL names, when it names one: `resource` is then the served type
    /// its objects are stored as, and bodies are converted both ways (`old_versions`).
    old: Option<&'static OldVersion>,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
    /// Path after the subresource (proxy paths).
    rest: Vec<&'a str>,
}

impl Target<'_> {
    fn scope(&self) -> Scope<'_> {
        Scope {
            resource: self.resource,
            namespace: self.namespace,
        }
    }

    /// The `apiVersion` bodies sent to this URL carry.
    fn api_version(&self) -> String {
        self.old
            .map_or_else(|| self.resource.api_version(), OldVersion::api_version)
    }

    /// A stored object as the URL's version shows it.
    fn shown(&self, mut object: Value) -> Value {
        if let Some(old) = self.old {
            old.convert_out(&mut object);
        }
        object
    }

    /// One object, in the URL's version, rendered as the client asked.
    fn render(&self, object: Value, rendering: Rendering) -> Value {
        response::render_object(self.resource, &self.shown(object), rendering)
    }

    /// A list, in the URL's version, rendered as the client asked.
    fn render_list(&self, items: Vec<Value>, meta: Value, rendering: Rendering) -> Value {
        let items = items.into_iter().map(|item| self.shown(item)).collect();
        let mut list = response::render_list(self.resource, items, meta, rendering);
        if self.old.is_some() && rendering == Rendering::Object {
            list["apiVersion"] = json!(self.api_version());
        }
        list
    }
}

/// Entry point for every path outside the health endpoints.
pub async fn handle(State(state): State<ApiState>, request: Request) -> Response {
    tracing::trace!(method = %request.method(), uri = %request.uri(), "request");
    match serve(&state, request).await {
        Ok(response) => response,
        Err(error) => response::error(&error),
    }
}

async fn serve(state: &ApiState, request: Request) -> Result<Response, ApiError> {
    let path = request.uri().path().to_string();
    let query = Query::parse(request.uri().query());
    if let Some((namespace, name, stream)) = stream_target(request.method(), &path) {
        let pod = pod(state, &namespace, &name).await?;
        let (parts, _) = request.into_parts();
        return crate::nodes::relay::stream(state, stream, &pod, &query, parts).await;
    }
    if let Some(target) = crate::proxy::ProxyTarget::parse(&path) {
        return crate::proxy::serve(state, target, request).await;
    }
    let method = request.method().clone();
    let accept = header_text(request.headers(), header::ACCEPT);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => return Ok(response::json(StatusCode::OK, &discovery::version())),
        ["api"] => {
            return Ok(if discovery::wants_aggregated(&accept) {
                response::json_with_type(
                    StatusCode::OK,
                    &discovery::aggregated_core(),
                    discovery::AGGREGATED_CONTENT_TYPE,
                )
            } else {
                let host = header_text(request.headers(), header::HOST);
                response::json(StatusCode::OK, &discovery::core_versions(&host))
            });
        }
        ["apis"] => {
            return Ok(if discovery::wants_aggregated(&accept) {
                response::json_with_type(
                    StatusCode::OK,
                    &discovery::aggregated_groups(),
                    discovery::AGGREGATED_CONTENT_TYPE,
                )
            } else {
                response::json(StatusCode::OK, &discovery::group_list())
            });
        }
        ["api", "v1"] => {
            return Ok(response::json(
                StatusCode::OK,
                &discovery::resource_list("", "v1"),
            ));
        }
        ["apis", group] => {
            return discovery::group(group)
                .map(|g| response::json(StatusCode::OK, &g))
                .ok_or_else(ApiError::no_route);
        }
        ["apis", group, version]
            if resources::serves_group_version(group, version)
                || old_versions::serves_group_version(group, version) =>
        {
            return Ok(response::json(
                StatusCode::OK,
                &discovery::resource_list(group, version),
            ));
        }
        ["openapi", "v2"] => return Ok(crate::openapi::v2()),
        ["openapi", "v3", rest @ ..] => return crate::openapi::v3(rest),
        _ => {}
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route()),
    };
    let target = parse_target(group, version, rest)?;
    if let Some(old) = target.old {
        // Every answer at an old version carries the warning, errors too, as upstream's.
        let answer = match serve_target(state, request, &query, &method, &accept, target).await {
            Ok(answer) => answer,
            Err(error) => response::error(&error),
        };
        return Ok(with_first_warning(answer, &old.warning()));
    }
    serve_target(state, request, &query, &method, &accept, target).await
}

async fn serve_target(
    state: &ApiState,
    request: Request,
    query: &Query,
    method: &Method,
    accept: &str,
    target: Target<'_>,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    if !target.resource.is_stored() {
        let user = request
            .extensions()
            .get::<crate::auth::UserInfo>()
            .cloned()
            .unwrap_or_default();
        let body = read_body(request).await?;
        let (namespace, named) = (target.namespace, target.name.is_some());
        return crate::reviews::serve(
            state,
            method,
            &user,
            target.resource,
            namespace,
            named,
            &body,
        )
        .await;
    }
    let body = read_body(request).await?;
    dispatch(state, method, &headers, query, target, body, accept).await
}

/// The field manager a write is recorded for: `fieldManager`, else upstream's default, the
/// user agent up to its first `/` (`kubectl/v1.33.0 (linux/amd64) …` is `kubectl`), at most
/// 128 characters.
pub(crate) fn field_manager_name(query: &Query, headers: &HeaderMap) -> Option<String> {
    if let Some(name) = query.get("fieldManager").filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let agent = header_text(headers, header::USER_AGENT);
    let prefix: String = agent
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .take(128)
        .collect();
    (!prefix.is_empty()).then_some(prefix)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large())
}

/// The served type a URL's group, version and plural name, and the old version they name
/// when they name one (stored as a served type).
fn lookup(
    group: &str,
    version: &str,
    plural: &str,
) -> Option<(&'static ResourceType, Option<&'static OldVersion>)> {
    if let Some(resource) = resources::find(group, version, plural) {
        return Some((resource, None));
    }
    let old = old_versions::find(group, version, plural)?;
    Some((old.current()?, Some(old)))
}

fn parse_target<'a>(
    group: &'a str,
    version: &'a str,
    rest: &[&'a str],
) -> Result<Target<'a>, ApiError> {
    let find = |plural: &str| lookup(group, version, plural).ok_or_else(ApiError::no_route);
    let namespaced_collection =
        |plural: &str| lookup(group, version, plural).filter(|(r, _)| r.namespaced);
    let target = match rest {
        ["namespaces", namespace, plural, tail @ ..] if namespaced_collection(plural).is_some() => {
            let (resource, old) = find(plural)?;
            Target {
                resource,
                old,
                namespace: Some(namespace),
                name: tail.first().copied(),
                subresource: tail.get(1).copied(),
                rest: tail.iter().skip(2).copied().collect(),
            }
        }
        [plural, tail @ ..] => {
            let (resource, old) = find(plural)?;
            Target {
                resource,
                old,
                namespace: None,
                name: tail.first().copied(),
                subresource: tail.get(1).copied(),
                rest: tail.iter().skip(2).copied().collect(),
            }
        }
        [] => return Err(ApiError::no_route()),
    };
    if let Some(sub) = target.subresource
        && (!target.resource.serves_subresource(sub) || (target.old.is_some() && sub != "status"))
    {
        // An old version serves its objects and their status; its Scale kinds are not served.
        return Err(ApiError::no_route());
    }
    Ok(target)
}

async fn dispatch(
    state: &ApiState,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    target: Target<'_>,
    body: Bytes,
    accept: &str,
) -> Result<Response, ApiError> {
    let rendering = Rendering::negotiate(
        accept,
        query.get("includeObject"),
        state.registry.timestamp(),
    );
    let resource = target.resource;
    if let Some(kind) = options_kind(method) {
        check_dry_run(kind, query.all("dryRun"))?;
    }
    if let Some(sub) = target.subresource {
        return subresource(state, method, headers, query, &target, sub, body, rendering).await;
    }
    match (method, target.name) {
        (&Method::GET, None) if query.flag("watch") => {
            // A protobuf client's watch is framed protobuf when its objects have a layout (an
            // old version's objects are JSON only).
            let protobuf = rendering == Rendering::Object
                && target.old.is_none()
                && resource.protobuf.is_some()
                && matches!(
                    crate::protobuf::encode::Preference::of(accept),
                    crate::protobuf::encode::Preference::Protobuf { .. }
                );
            watch_collection(state, query, &target, rendering, protobuf).await
        }
        (&Method::GET, None) => list(state, query, &target, rendering).await,
        (&Method::GET, Some(name)) => {
            let object = state.registry.get(target.scope(), name).await?;
            Ok(response::json(
                StatusCode::OK,
                &target.render(object, rendering),
            ))
        }
        (&Method::POST, None) => {
            let (object, mut warnings) = decode_checked(headers, &body, &target, query)?;
            let manager = field_manager_name(query, headers);
            let created = state
                .registry
                .create_by(
                    target.scope(),
                    object,
                    query.dry_run(),
                    Manager::named(manager.as_deref()),
                )
                .await?;
            warnings.extend(resource.strategy.warnings(&created));
            Ok(with_warnings(
                response::json(StatusCode::CREATED, &target.render(created, rendering)),
                &warnings,
            ))
        }
        (&Method::PUT, Some(name)) => {
            let (object, mut warnings) = decode_checked(headers, &body, &target, query)?;
            let manager = field_manager_name(query, headers);
            let updated = state
                .registry
                .update_by(
                    target.scope(),
                    name,
                    None,
                    object,
                    query.dry_run(),
                    Manager::named(manager.as_deref()),
                )
                .await?;
            warnings.extend(resource.strategy.warnings(&updated));
            Ok(with_warnings(
                response::json(StatusCode::OK, &target.render(updated, rendering)),
                &warnings,
            ))
        }
        (&Method::PATCH, Some(name)) => {
            let (patched, created) =
                patch(state, headers, query, &target, name, None, &body).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let warnings = resource.strategy.warnings(&patched);
            Ok(with_warnings(
                response::json(status, &target.render(patched, rendering)),
                &warnings,
            ))
        }
        (&Method::DELETE, Some(name)) => {
            let options = delete_options(query, &body)?;
            match state
                .registry
                .delete(target.scope(), name, &options)
                .await?
            {
                Deleted::Gone(object) => {
                    let answer = if resource.strategy.returns_deleted_object() {
                        target.shown(object)
                    } else {
                        response::delete_success(resource, &object)
                    };
                    Ok(response::json(StatusCode::OK, &answer))
                }
                Deleted::Pending(object) => {
                    Ok(response::json(StatusCode::OK, &target.shown(object)))
                }
            }
        }
        (&Method::DELETE, None) if !resource.strategy.allows_delete_collection() => {
            Err(ApiError::method_not_allowed(method.as_str()))
        }
        (&Method::DELETE, None) => {
            let options = delete_options(query, &body)?;
            let filters = filters(query, resource)?;
            let page = state
                .registry
                .list(target.scope(), &filters, None, None, None)
                .await?;
            let mut results = Vec::new();
            for object in page.items {
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let namespace = object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let scope = Scope {
                    resource,
                    namespace: namespace.as_deref().or(target.namespace),
                };
                match state.registry.delete(scope, &name, &options).await {
                    Ok(Deleted::Gone(object) | Deleted::Pending(object)) => results.push(object),
                    Err(error) if error.code == 404 => {}
                    Err(error) => return Err(error),
                }
            }
            let revision = state
                .registry
                .store()
                .current_revision()
                .await
                .map_err(crate::registry::store_error)?;
            Ok(response::json(
                StatusCode::OK,
                &target.render_list(
                    results,
                    json!({"resourceVersion": revision.to_string()}),
                    Rendering::Object,
                ),
            ))
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

fn filters(query: &Query, resource: &ResourceType) -> Result<Filters, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    for path in fields.paths() {
        if !resource.selectable_field(path) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {path}"
            )));
        }
    }
    Ok(Filters { labels, fields })
}

async fn list(
    state: &ApiState,
    query: &Query,
    target: &Target<'_>,
    rendering: Rendering,
) -> Result<Response, ApiError> {
    let filters = filters(query, target.resource)?;
    let limit: Option<usize> = query.number("limit")?;
    let exact = query.get("resourceVersionMatch") == Some("Exact");
    let revision: Option<i64> = query.number("resourceVersion")?;
    let page = state
        .registry
        .list(
            target.scope(),
            &filters,
            limit,
            query.get("continue").filter(|c| !c.is_empty()),
            revision.filter(|_| exact),
        )
        .await?;
    let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = page.continue_token {
        meta["continue"] = json!(token);
    }
    if let Some(remaining) = page.remaining {
        meta["remainingItemCount"] = json!(remaining);
    }
    Ok(response::json(
        StatusCode::OK,
        &target.render_list(page.items, meta, rendering),
    ))
}

async fn watch_collection(
    state: &ApiState,
    query: &Query,
    target: &Target<'_>,
    rendering: Rendering,
    protobuf: bool,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let old = target.old;
    let request = WatchRequest {
        filters: filters(query, resource)?,
        resource_version: query.number("resourceVersion")?,
        send_initial_events: query.flag("sendInitialEvents"),
        allow_bookmarks: query.flag("allowWatchBookmarks"),
        timeout: query
            .number::<u64>("timeoutSeconds")?
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
    };
    let events = watch::watch(
        &state.registry,
        &state.watch_cache,
        target.scope(),
        request,
        state.shutdown.subscribe(),
    )
    .await?;
    let mut first = true;
    // Each event's AGE counts from when it is sent.
    let registry = state.registry.clone();
    if protobuf {
        return Ok(protobuf_watch(events, resource));
    }
    let lines = events.map(move |event| {
        let type_name = event.type_name();
        let object = match &event {
            WatchEvent::Bookmark {
                revision,
                initial_events_end,
            } => {
                let mut bookmark = bookmark_object(resource, *revision, *initial_events_end);
                if let Some(old) = old {
                    bookmark["apiVersion"] = json!(old.api_version());
                }
                bookmark
            }
            WatchEvent::Error(error) => error.to_status(),
            other => {
                let Some(shared) = other.object() else {
                    return Ok::<_, Infallible>(Bytes::new());
                };
                // An old version's watcher gets each object converted for it.
                let converted = old.map(|old| {
                    let mut object = shared.value().clone();
                    old.convert_out(&mut object);
                    object
                });
                match rendering {
                    // The common case: the object's JSON, made once for every watcher.
                    Rendering::Object => {
                        return Ok(match &converted {
                            Some(object) => event_line(
                                type_name,
                                &serde_json::to_vec(object).unwrap_or_default(),
                            ),
                            None => event_line(type_name, &shared.json()),
                        });
                    }
                    Rendering::Table { include, .. } => {
                        let object = converted.as_ref().unwrap_or(shared.value());
                        let meta = json!({"resourceVersion": object.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
                        let table = response::table(
                            resource,
                            std::slice::from_ref(object),
                            meta,
                            include,
                            first,
                            registry.timestamp(),
                        );
                        first = false;
                        table
                    }
                    Rendering::PartialMetadata => response::partial_metadata(shared.value()),
                }
            }
        };
        Ok(event_line(
            type_name,
            &serde_json::to_vec(&object).unwrap_or_default(),
        ))
    });
    let mut response = Response::new(Body::from_stream(lines));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(response::NO_CACHE),
    );
    Ok(response)
}

/// What to do with fields the kind's type does not know (`fieldValidation`; Warn by default).
fn field_validation(query: &Query) -> FieldValidation {
    match query.get("fieldValidation") {
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        _ => FieldValidation::Warn,
    }
}

/// Adds `Warning` headers, which kubectl prints as `Warning: …`.
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        if let Some(value) = warning_value(warning) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// Puts `warning` before the answer's other warnings, as upstream's deprecation warning is
/// added before the request is handled.
fn with_first_warning(mut response: Response, warning: &str) -> Response {
    let headers = response.headers_mut();
    let later: Vec<header::HeaderValue> =
        headers.get_all(header::WARNING).iter().cloned().collect();
    headers.remove(header::WARNING);
    for value in warning_value(warning).into_iter().chain(later) {
        headers.append(header::WARNING, value);
    }
    response
}

/// A `Warning` header value as upstream writes it: code 299, no agent, the text quoted.
fn warning_value(warning: &str) -> Option<header::HeaderValue> {
    header::HeaderValue::from_str(&format!("299 - {warning:?}")).ok()
}

/// One line of a watch stream: `{"type":…,"object":…}` and a newline.
/// A watch as upstream streams it to a protobuf client: each event a metav1.WatchEvent in a
/// 4-byte big-endian length, its object enveloped as a protobuf answer is. An object that
/// cannot be laid out (none should: every stored field has a place) ends the stream with an
/// ERROR event, rather than reaching the client short of a field.
fn protobuf_watch(
    events: impl futures::Stream<Item = WatchEvent> + Send + 'static,
    resource: &'static ResourceType,
) -> Response {
    use crate::protobuf::encode;
    let frame = |type_name: &str, object: &Value| {
        encode::body(object).map(|enveloped| {
            let event = encode::watch_event(type_name, &enveloped);
            let mut framed = Vec::with_capacity(event.len() + 4);
            framed.extend_from_slice(&(event.len() as u32).to_be_bytes());
            framed.extend_from_slice(&event);
            Bytes::from(framed)
        })
    };
    let frames = events
        .map(move |event| {
            let object = match &event {
                WatchEvent::Bookmark {
                    revision,
                    initial_events_end,
                } => bookmark_object(resource, *revision, *initial_events_end),
                WatchEvent::Error(error) => error.to_status(),
                other => match other.object() {
                    Some(shared) => shared.value().clone(),
                    None => return Ok(Bytes::new()),
                },
            };
            frame(event.type_name(), &object).map_err(|encode::Unencodable(why)| {
                let error =
                    ApiError::internal(format!("the watch cannot go on in protobuf: {why}"));
                frame("ERROR", &error.to_status()).unwrap_or_default()
            })
        })
        // The first object that cannot be laid out ends the stream after its ERROR event.
        .scan(false, |ended, framed| {
            if *ended {
                return futures::future::ready(None);
            }
            futures::future::ready(Some(match framed {
                Ok(bytes) => Ok::<_, Infallible>(bytes),
                Err(error_frame) => {
                    *ended = true;
                    Ok(error_frame)
                }
            }))
        });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/vnd.kubernetes.protobuf;stream=watch"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(response::NO_CACHE),
    );
    response
}

fn event_line(type_name: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(type_name.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// Decodes a request body: JSON (which is also valid YAML), or the protobuf envelope kubectl's
/// imperative `create` commands send.
fn decode_body(headers: &HeaderMap, body: &[u8], target: &Target<'_>) -> Result<Value, ApiError> {
    let resource = target.resource;
    let version = target.old.map_or(resource.version, |old| old.version);
    let content_type = header_text(headers, header::CONTENT_TYPE);
    let base = content_type.split(';').next().unwrap_or_default().trim();
    match base {
        "" | "application/json" | "application/yaml" | "*/*" => serde_json::from_slice(body)
            .map_err(|error| {
                ApiError::bad_request(format!(
                    "{kind} in version \"{version}\" cannot be handled as a {kind}: {error}",
                    kind = resource.kind,
                ))
            }),
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body, resource),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// A body to write: decoded, of the URL's type (converted from an old version the URL
/// names), and of its kind's shape; with the warnings about the fields that were dropped.
fn decode_checked(
    headers: &HeaderMap,
    body: &[u8],
    target: &Target<'_>,
    query: &Query,
) -> Result<(Value, Vec<String>), ApiError> {
    let resource = target.resource;
    let mut object = decode_body(headers, body, target)?;
    check_type(target, &object)?;
    if let Some(old) = target.old {
        old.convert_in(&mut object);
    }
    let warnings = check_shape(resource, &mut object, field_validation(query))?;
    Ok((object, warnings))
}

/// The body's apiVersion and kind, when given, must be the URL's.
fn check_type(target: &Target<'_>, object: &Value) -> Result<(), ApiError> {
    let resource = target.resource;
    let expected = target.api_version();
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !api_version.is_empty() && api_version != expected {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected})"
        )));
    }
    if !kind.is_empty() && kind != resource.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            resource.kind
        )));
    }
    Ok(())
}

fn delete_options(query: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut options = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        let value: Value = if body.starts_with(b"k8s\0") {
            crate::protobuf::decode_request_options(body, "DeleteOptions")?
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        if let Some(values) = value.get("dryRun").and_then(Value::as_array) {
            check_dry_run(
                "DeleteOptions",
                values.iter().map(|v| v.as_str().unwrap_or_default()),
            )?;
        }
        DeleteOptions::from_json(&value)
    };
    if let Some(grace) = query.number("gracePeriodSeconds")? {
        options.grace_period_seconds = Some(grace);
    }
    if let Some(policy) = query.get("propagationPolicy") {
        options.propagation_policy = Some(policy.to_string());
    }
    if let Some(orphan) = query.get("orphanDependents") {
        options.orphan_dependents = Some(query_bool(Some(orphan)));
    }
    options.dry_run |= query.dry_run();
    Ok(options)
}

async fn patch(
    state: &ApiState,
    headers: &HeaderMap,
    query: &Query,
    target: &Target<'_>,
    name: &str,
    subresource: Option<&str>,
    body: &[u8],
) -> Result<(Value, bool), ApiError> {
    let content_type = header_text(headers, header::CONTENT_TYPE);
    let patch_type = PatchType::from_content_type(&content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
    let document: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("error decoding patch: {error}")))?;
    if patch_type == PatchType::Apply {
        check_type(target, &document)?;
    } else if query.get("force").is_some() {
        // Upstream's patch options validation: only an apply has conflicts to force.
        let cause = Cause {
            reason: "FieldValueForbidden",
            field: "force".into(),
            message: "Forbidden: may not be specified for non-apply patch".into(),
        };
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            vec![cause],
        ));
    }
    // An apply names its manager; other patches may leave it to the user agent.
    let manager_name = match patch_type {
        PatchType::Apply => query.get("fieldManager").map(str::to_string),
        _ => field_manager_name(query, headers),
    };
    let manager = Manager {
        force: query.flag("force"),
        ..Manager::named(manager_name.as_deref())
    };
    state
        .registry
        .patch_as(
            target.scope(),
            target.old,
            name,
            subresource,
            patch_type,
            &document,
            manager,
            field_validation(query) == FieldValidation::Strict,
            query.dry_run(),
        )
        .await
}

#[allow(clippy::too_many_arguments)]
async fn subresource(
    state: &ApiState,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    target: &Target<'_>,
    sub: &str,
    body: Bytes,
    rendering: Rendering,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let Some(name) = target.name else {
        return Err(ApiError::no_route());
    };
    match sub {
        "status" | "finalize" => match *method {
            Method::GET if sub == "status" => {
                let object = state.registry.get(target.scope(), name).await?;
                Ok(response::json(
                    StatusCode::OK,
                    &target.render(object, rendering),
                ))
            }
            Method::PUT => {
                let (object, _) = decode_checked(headers, &body, target, query)?;
                let manager = field_manager_name(query, headers);
                let updated = state
                    .registry
                    .update_by(
                        target.scope(),
                        name,
                        Some(sub),
                        object,
                        query.dry_run(),
                        Manager::named(manager.as_deref()),
                    )
                    .await?;
                Ok(response::json(StatusCode::OK, &target.shown(updated)))
            }
            Method::PATCH => {
                let (patched, _) =
                    patch(state, headers, query, target, name, Some(sub), &body).await?;
                Ok(response::json(StatusCode::OK, &target.shown(patched)))
            }
            _ => Err(ApiError::method_not_allowed(method.as_str())),
        },
        "ephemeralcontainers" => {
            let pod = state.registry.get(target.scope(), name).await?;
            match *method {
                Method::GET => Ok(response::json(
                    StatusCode::OK,
                    &response::render_object(resource, &pod, rendering),
                )),
                Method::PATCH | Method::PUT => Err(ApiError::forbidden_on(
                    resource,
                    name,
                    "ephemeral containers are not supported by petset's nodes yet; \
                     `kubectl debug --copy-to=NAME` debugs a copy of the pod instead",
                )),
                _ => Err(ApiError::method_not_allowed(method.as_str())),
            }
        }
        "scale" => {
            crate::scale::serve(state, method, headers, query, target.scope(), name, &body).await
        }
        "eviction" if *method == Method::POST => {
            let eviction = if body.starts_with(b"k8s\0") {
                crate::protobuf::decode_request_options(&body, "Eviction")?
            } else {
                serde_json::from_slice::<Value>(&body).unwrap_or_default()
            };
            crate::eviction::evict(state, target.scope(), name, &eviction, query.dry_run()).await
        }
        "binding" if *method == Method::POST => {
            let binding: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid Binding: {e}")))?;
            let node = binding
                .pointer("/target/name")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request("a Binding needs target.name"))?;
            // A pod is bound once (upstream answers a second binding with a Conflict); the
            // resourceVersion makes the check and the write one step.
            let current = state.registry.get(target.scope(), name).await?;
            if let Some(bound) = current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict_because(
                    resource,
                    name,
                    &format!("pod {name} is already assigned to node {bound:?}"),
                ));
            }
            if let Some(uid) = binding.pointer("/metadata/uid").and_then(Value::as_str)
                && !uid.is_empty()
                && current.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
            {
                return Err(ApiError::conflict_because(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        current
                            .pointer("/metadata/uid")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    ),
                ));
            }
            let patch = json!({
                "metadata": {"resourceVersion": current.pointer("/metadata/resourceVersion")},
                "spec": {"nodeName": node},
                "status": {"conditions": scheduled_conditions(&current, &state.registry.now())},
            });
            state
                .registry
                .patch(
                    target.scope(),
                    name,
                    Some("binding"),
                    PatchType::Merge,
                    &patch,
                    Manager::default(),
                    false,
                    false,
                )
                .await?;
            Ok(response::json(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        "token" if *method == Method::POST && target.resource.is("", "serviceaccounts") => {
            let namespace = target.namespace.unwrap_or_default();
            let answer = crate::token_request::serve(state, namespace, name, &body).await?;
            Ok(response::json(StatusCode::CREATED, &answer))
        }
        "log" if *method == Method::GET && target.resource.is("", "pods") => {
            let pod = state.registry.get(target.scope(), name).await?;
            crate::nodes::relay::log(state, &pod, query).await
        }
        "log" | "exec" | "attach" | "portforward" | "proxy" => {
            // The object must exist before anything else is said about it.
            state
                .registry
                .get(target.scope(), name.split(':').next().unwrap_or(name))
                .await?;
            let _ = &target.rest;
            if sub == "exec" || sub == "attach" || sub == "portforward" {
                // exec, attach and portforward are served over WebSocket only (kubectl tries it first); this is what
                // upstream answers a request that is not an upgrade.
                return Err(ApiError::bad_request("Upgrade request required"));
            }
            Err(ApiError::service_unavailable(format!(
                "{} {name:?}: {sub} is not served by petset yet",
                resource.plural
            )))
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// The pod's conditions with `PodScheduled=True`, as upstream's binding writes them (the
/// transition time moves only when the status changes).
fn scheduled_conditions(pod: &Value, now: &str) -> Value {
    let mut conditions: Vec<Value> = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        Some(condition) => {
            if condition.get("status").and_then(Value::as_str) != Some("True") {
                *condition = json!({"type": "PodScheduled", "status": "True",
                    "lastProbeTime": null, "lastTransitionTime": now});
            }
        }
        None => conditions.push(json!({"type": "PodScheduled", "status": "True",
            "lastProbeTime": null, "lastTransitionTime": now})),
    }
    Value::Array(conditions)
}

/// A pod's stream subresource (`exec`, `attach`, `portforward`), which is relayed to its node
/// whatever the request (the node answers what is not an upgrade it serves).
fn stream_target(method: &Method, path: &str) -> Option<(String, String, crate::nodes::Stream)> {
    if *method != Method::GET && *method != Method::POST {
        return None;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["api", "v1", "namespaces", namespace, "pods", name, sub] => {
            let stream = crate::nodes::Stream::of(sub)?;
            Some((namespace.to_string(), name.to_string(), stream))
        }
        _ => None,
    }
}

async fn pod(state: &ApiState, namespace: &str, name: &str) -> Result<Value, ApiError> {
    let resource = petset_api::resources::find("", "v1", "pods").ok_or_else(ApiError::no_route)?;
    let scope = Scope {
        resource,
        namespace: Some(namespace),
    };
    state.registry.get(scope, name).await
}
