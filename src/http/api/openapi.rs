//! `/openapi.json`: an OpenAPI 3.1 document generated from the config. Every command is an operation whose
//! request body is the JSON schema of its typed `input` (required and optional fields, their types, nothing
//! else accepted), with the contract's error responses; every view's get and list is an operation; and the
//! aggregates' state and history and the event tail are described once per aggregate.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use eddy_engine::aggregate::input::{limits, Field, FieldType};
use eddy_engine::config::Config;
use serde_json::{json, Map, Value as Json};

use super::{json as respond, refused};
use crate::http::auth::Scope;
use crate::http::AppState;

pub(super) async fn serve(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refused(&state, &headers, &peer, Scope::Queries) {
        return refused;
    }
    let views: Vec<String> = state.views.status().await.into_iter().map(|v| v.name).collect();
    respond(200, document(&state.config, &views).to_string())
}

/// The document for `config`, with `views` (their names).
pub fn document(config: &Config, views: &[String]) -> Json {
    let mut paths = Map::new();
    for (name, aggregate) in &config.aggregates {
        for (command, def) in &aggregate.commands {
            let op = command_operation(name, command, &def.input);
            paths.insert(format!("/v1/commands/{name}/{command}"), json!({"post": op}));
        }
        let id = path_param("id", "The aggregate's id.");
        let at =
            query_param("at_version", "The state as it was at this version.", json!({"type": "integer", "minimum": 0}));
        paths.insert(
            format!("/v1/aggregates/{name}/{{id}}"),
            json!({"get": read_op(&format!("get-{name}"), &format!("The state and version of a {name}"), vec![id.clone(), at], "State")}),
        );
        let after =
            query_param("after_version", "Events after this version.", json!({"type": "integer", "minimum": 0}));
        let limit =
            query_param("limit", "At most this many events (1000 at most).", json!({"type": "integer", "minimum": 1}));
        paths.insert(
            format!("/v1/aggregates/{name}/{{id}}/events"),
            json!({"get": read_op(&format!("history-{name}"), &format!("The events of a {name}"), vec![id, after, limit], "History")}),
        );
    }
    for view in views {
        let key = path_param("key", "The document's key.");
        paths.insert(
            format!("/v1/views/{view}/{{key}}"),
            json!({"get": read_op(&format!("get-{view}"), &format!("One document of view {view}"), vec![key, min_seq(), timeout()], "Document")}),
        );
        let text = |n: &str, d: &str| query_param(n, d, json!({"type": "string"}));
        let params = vec![
            text("prefix", "Keys starting with this."),
            text("after", "Keys after this one (the previous page's `next`)."),
            query_param("limit", "At most this many documents.", json!({"type": "integer", "minimum": 1})),
            text("where", "A CEL filter over `key` and `doc`."),
            min_seq(),
            timeout(),
        ];
        paths.insert(
            format!("/v1/views/{view}"),
            json!({"get": read_op(&format!("list-{view}"), &format!("Documents of view {view}"), params, "Page")}),
        );
    }
    let subjects =
        query_param("subjects", "Comma-separated filters under events. (default events.>).", json!({"type": "string"}));
    let mut tail = read_op("events", "A live tail of the stream as server-sent events", vec![subjects], "Page");
    tail["responses"]["200"] = json!({"description": "Server-sent events: `id` is the seq, `event` the type, `data` the event as JSON.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}});
    paths.insert("/v1/events".into(), json!({"get": tail}));
    json!({
        "openapi": "3.1.0",
        "info": {"title": "eddy", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Commands, views and aggregates of this eddy application, generated from its config."},
        "paths": paths,
        "components": components(),
        "security": [{"bearer": []}, {}],
    })
}

fn field_schema(ty: FieldType) -> Json {
    match ty {
        FieldType::String => json!({"type": "string", "maxLength": limits::MAX_STRING}),
        FieldType::Int => json!({"type": "integer"}),
        FieldType::Double => json!({"type": "number"}),
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::List => json!({"type": "array", "maxItems": limits::MAX_ITEMS}),
        FieldType::Map => json!({"type": "object", "maxProperties": limits::MAX_ITEMS}),
        FieldType::Any => json!({"not": {"type": "null"}}),
    }
}

fn command_operation(aggregate: &str, command: &str, input: &[Field]) -> Json {
    let mut properties = Map::new();
    properties.insert("id".into(), json!({"type": "string", "minLength": 1, "maxLength": 256}));
    let mut required = vec![json!("id")];
    for f in input {
        properties.insert(f.name.clone(), field_schema(f.ty));
        if !f.optional {
            required.push(json!(f.name));
        }
    }
    let header = |name: &str, d: &str| json!({"name": name, "in": "header", "required": false, "description": d, "schema": {"type": "string"}});
    let mut responses = Map::new();
    responses
        .insert("200".into(), json!({"description": "Accepted: the events it stored.", "content": content("Success")}));
    for (status, what) in [
        ("400", "invalid: the body or a header is malformed"),
        ("401", "unauthorized: no or an unknown bearer token"),
        ("403", "forbidden: the token lacks the `commands` scope, or a client off loopback without tokens"),
        ("404", "not_found: no such aggregate or command"),
        ("409", "conflict: If-Match names another version"),
        ("413", "too_large: the body is over 1 MiB"),
        ("415", "unsupported_media_type: not application/json"),
        ("422", "rejected: a rule of the command does not hold"),
        ("500", "internal"),
        ("503", "unavailable: the store did not answer; retry with the same Idempotency-Key"),
    ] {
        responses.insert(status.into(), json!({"description": what, "content": content("Failure")}));
    }
    json!({
        "operationId": format!("{aggregate}-{command}"),
        "summary": format!("{aggregate}.{command}"),
        "tags": [aggregate],
        "parameters": [
            header("Idempotency-Key", "The command id: a repeat is answered with the first reply."),
            header("If-Match", "The aggregate's expected version."),
            header("Eddy-Correlation-Id", "Carried to the events."),
            query_param("wait", "Wait up to this many seconds for the sagas it starts to end.", json!({"type": "integer", "minimum": 1, "maximum": eddy_engine::api::MAX_WAIT_SECS})),
        ],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "type": "object", "properties": properties, "required": required, "additionalProperties": false,
        }}}},
        "responses": responses,
    })
}

fn read_op(id: &str, summary: &str, parameters: Vec<Json>, reply: &str) -> Json {
    json!({
        "operationId": id,
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": {"description": "Found.", "content": content(reply)},
            "400": {"description": "invalid", "content": content("Failure")},
            "401": {"description": "unauthorized", "content": content("Failure")},
            "403": {"description": "forbidden: the token lacks the `queries` scope", "content": content("Failure")},
            "404": {"description": "not_found", "content": content("Failure")},
            "503": {"description": "unavailable", "content": content("Failure")},
        },
    })
}

fn content(schema: &str) -> Json {
    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}})
}

fn path_param(name: &str, description: &str) -> Json {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn query_param(name: &str, description: &str, schema: Json) -> Json {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn min_seq() -> Json {
    query_param(
        "min_seq",
        "Read your writes: wait until the view has applied this seq.",
        json!({"type": "integer", "minimum": 0}),
    )
}

fn timeout() -> Json {
    query_param(
        "timeout_ms",
        "How long `min_seq` may wait (30000 at most).",
        json!({"type": "integer", "minimum": 0, "maximum": 30000}),
    )
}

fn components() -> Json {
    let event = json!({"type": "object", "properties": {
        "type": {"type": "string"}, "seq": {"type": "integer"}, "data": {}}});
    json!({
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
            "description": "An [http.tokens] token; without any configured, only loopback clients are answered."}},
        "schemas": {
            "Success": {"type": "object", "required": ["ok", "aggregate", "id", "version", "seq", "events"], "properties": {
                "ok": {"const": true}, "aggregate": {"type": "string"}, "id": {"type": "string"},
                "version": {"type": "integer"}, "seq": {"type": "integer"}, "events": {"type": "array", "items": event},
                "sagas": {"type": "array", "description": "With ?wait: each saga instance the command started."},
                "timed_out": {"type": "boolean"}}},
            "Failure": {"type": "object", "required": ["ok", "error"], "properties": {
                "ok": {"const": false},
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "enum": ["invalid", "not_found", "conflict", "rejected", "unavailable", "internal",
                        "unauthorized", "forbidden", "method_not_allowed", "too_large", "unsupported_media_type"]},
                    "message": {"type": "string"}}}}},
            "State": {"type": "object", "properties": {"ok": {"const": true}, "version": {"type": "integer"},
                "seq": {"type": "integer"}, "state": {"type": "object"}}},
            "History": {"type": "object", "properties": {"ok": {"const": true}, "events": {"type": "array"},
                "next": {"type": ["integer", "null"]}}},
            "Document": {"type": "object", "properties": {"ok": {"const": true}, "key": {"type": "string"},
                "doc": {"type": ["object", "null"]}, "seq": {"type": "integer"}}},
            "Page": {"type": "object", "properties": {"ok": {"const": true}, "items": {"type": "array"},
                "next": {"type": ["string", "null"]}, "seq": {"type": "integer"}}},
        },
    })
}
