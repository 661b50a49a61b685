//! docs/api.md's route reference is rendered from the OpenAPI document (`ApiDoc`), and
//! the router, the document and the error vocabulary are checked against each other, so
//! that neither the reference nor `/v1/openapi.json` can drift from the code.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use utoipa::OpenApi;

use agenthub::api::ApiDoc;
use agenthub::error::Error;
use agenthub::store::StoreError;

const START: &str = "<!-- routes:start -->";
const END: &str = "<!-- routes:end -->";
const REGENERATE: &str = "UPDATE_API_DOCS=1 cargo test -p agenthub --test it api_docs";

/// Routes of the router that the OpenAPI document leaves out, with the reason.
const UNDOCUMENTED: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/v1/agent/connect",
        "the agents' WebSocket, specified in docs/protocol.md",
    ),
    (
        "POST",
        "/a2a/{workspace}",
        "A2A 1.0 JSON-RPC, specified by the A2A protocol and docs/a2a.md",
    ),
    (
        "GET",
        "/a2a/{workspace}/.well-known/agent-card.json",
        "the A2A Agent Card, specified by the A2A protocol and docs/a2a.md",
    ),
];

/// The operations of an OpenAPI path item, in the document's order.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[test]
fn api_md_route_reference_matches_the_openapi_document() {
    let path = root().join("docs/api.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        panic!("docs/api.md lacks the markers `{START}` and `{END}` around the route reference");
    };
    assert!(start < end, "docs/api.md has `{END}` before `{START}`");
    let section_start = start + START.len() + 1;
    let current = text.get(section_start..end).unwrap_or_default();
    let rendered = render(&openapi());
    if current == rendered {
        return;
    }
    if std::env::var_os("UPDATE_API_DOCS").is_some() {
        let updated = format!("{}{rendered}{}", &text[..section_start], &text[end..]);
        std::fs::write(&path, updated).unwrap();
        eprintln!("docs/api.md: route reference regenerated");
        return;
    }
    let line_idx = current
        .lines()
        .zip(rendered.lines())
        .position(|(old, new)| old != new)
        .unwrap_or_else(|| current.lines().count().min(rendered.lines().count()));
    panic!(
        "docs/api.md's route reference differs from the OpenAPI document (ApiDoc in \
         hub/src/api/mod.rs) at line {} of the section:\n  docs/api.md: {:?}\n  generated:   \
         {:?}\nregenerate it with `{REGENERATE}` and commit the result",
        line_idx + 1,
        current.lines().nth(line_idx).unwrap_or("<end>"),
        rendered.lines().nth(line_idx).unwrap_or("<end>"),
    );
}

#[test]
fn every_route_of_the_router_is_in_the_openapi_document() {
    let mut routed = BTreeSet::new();
    let mut problems = Vec::new();
    for file in rust_files(&root().join("hub/src")) {
        // The dashboard's pages answer HTML for browsers, not the JSON API: they are
        // deliberately not in the OpenAPI document (`web_pages_stay_outside_the_api`).
        if file.starts_with(root().join("hub/src/web")) {
            continue;
        }
        let text = code_of(&std::fs::read_to_string(&file).unwrap());
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        for call in [
            ".nest(",
            ".nest_service(",
            ".route_service(",
            ".route_layer(",
        ] {
            if text.contains(call) {
                problems.push(format!(
                    "{name} calls `{call}`, whose routes this check cannot see; teach \
                     `routes_in` (hub/tests/it/api_docs.rs) to read them"
                ));
            }
        }
        match routes_in(&text) {
            Ok(routes) => routed.extend(routes),
            Err(problem) => problems.push(format!("{name}: {problem}")),
        }
    }
    assert!(
        routed.contains(&("POST".to_string(), "/v1/tasks".to_string())),
        "no routes found in hub/src; the router is built in a way this check cannot read: \
         {routed:?}"
    );
    for (method, path, why) in UNDOCUMENTED {
        let route = (method.to_string(), path.to_string());
        if !routed.remove(&route) {
            problems.push(format!(
                "{method} {path} is listed as undocumented ({why}) but is not routed; remove it \
                 from UNDOCUMENTED"
            ));
        }
    }
    let doc = openapi();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    for (method, path) in routed.difference(&documented) {
        problems.push(format!(
            "{method} {path} is routed but not in the OpenAPI document: give its handler a \
             `#[utoipa::path]` and list it in ApiDoc's `paths` (hub/src/api/mod.rs), then run \
             `{REGENERATE}`"
        ));
    }
    for (method, path) in documented.difference(&routed) {
        problems.push(format!(
            "{method} {path} is in the OpenAPI document but no `.route(…)` serves it"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The pages left out of the OpenAPI document above never serve under `/v1`, where the
/// API and its document live.
#[test]
fn web_pages_stay_outside_the_api() {
    let mut pages = BTreeSet::new();
    for file in rust_files(&root().join("hub/src/web")) {
        let text = code_of(&std::fs::read_to_string(&file).unwrap());
        pages.extend(routes_in(&text).unwrap());
    }
    assert!(
        pages.contains(&("GET".to_string(), "/tasks/{id}".to_string())),
        "no page routes found in hub/src/web: {pages:?}"
    );
    let under_api: Vec<_> = pages
        .iter()
        .filter(|(_, path)| path.starts_with("/v1"))
        .collect();
    assert!(under_api.is_empty(), "pages under /v1: {under_api:?}");
}

#[test]
fn path_parameters_are_described() {
    let doc = openapi();
    let mut problems = Vec::new();
    for (method, path, operation) in operations(&doc) {
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let mut described = BTreeSet::new();
        for parameter in parameters(operation, "path") {
            let name = parameter["name"].as_str().unwrap_or_default();
            described.insert(name);
            if !in_path.contains(name) {
                problems.push(format!(
                    "{method} {path}: path parameter `{name}` is not in the path"
                ));
            }
            if text_of(parameter, "description").is_empty() {
                problems.push(format!(
                    "{method} {path}: path parameter `{name}` has no description"
                ));
            }
        }
        for name in in_path.difference(&described) {
            problems.push(format!(
                "{method} {path}: `{{{name}}}` is not described; add \
                 `params((\"{name}\" = String, Path, description = \"…\"))`"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_answer_is_described_and_errors_name_their_code() {
    // One of each error the hub can answer with: the statuses and codes it can render.
    let examples = [
        Error::bad_request("bad"),
        Error::invalid("invalid"),
        Error::Unauthorized("who".into()),
        Error::forbidden("no"),
        Error::not_found("thing"),
        Error::conflict("state"),
        Error::TooLarge("big".into()),
        Error::RateLimited,
        Error::Unsupported("what".into()),
        Error::Unavailable(StoreError::NestedTransaction),
        Error::internal("bug"),
    ];
    let codes: BTreeSet<(String, &str)> = examples
        .iter()
        .map(|err| (err.status().as_u16().to_string(), err.code()))
        .collect();
    let doc = openapi();
    let mut problems = Vec::new();
    for (method, path, operation) in operations(&doc) {
        if text_of(operation, "summary").is_empty() {
            problems.push(format!(
                "{method} {path} has no summary (the first line of the handler's doc comment)"
            ));
        }
        let Some(responses) = operation["responses"].as_object() else {
            problems.push(format!("{method} {path} has no responses"));
            continue;
        };
        for (status, response) in responses {
            let description = text_of(response, "description");
            if description.is_empty() {
                problems.push(format!(
                    "{method} {path}: answer {status} has no description"
                ));
            }
            if status.as_str() < "400" {
                continue;
            }
            match error_code(description) {
                Some(code) if codes.contains(&(status.clone(), code)) => {}
                Some(code) => problems.push(format!(
                    "{method} {path}: answer {status} names `{code}`, which the hub never \
                     answers with {status}; codes by status: {codes:?}"
                )),
                None => problems.push(format!(
                    "{method} {path}: the description of answer {status} must start with its \
                     code, as in \"`not_found`: no task with this id\""
                )),
            }
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            if schema.as_str() != Some("#/components/schemas/ErrorEnvelope") {
                problems.push(format!(
                    "{method} {path}: answer {status} must have the ErrorEnvelope body"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn annotations_agree_with_their_handlers_extractors() {
    let mut problems = Vec::new();
    let mut n_handlers = 0;
    for file in rust_files(&root().join("hub/src")) {
        let text = code_of(&std::fs::read_to_string(&file).unwrap());
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        for (attribute, signature) in annotated_handlers(&text) {
            n_handlers += 1;
            let handler = signature.split('(').next().unwrap_or_default().trim();
            let authenticated = signature.contains("Auth(");
            let anonymous = attribute.contains("security(())");
            if authenticated == anonymous {
                problems.push(format!(
                    "{name}: `{handler}` {}",
                    if authenticated {
                        "authenticates but its annotation says `security(())`"
                    } else {
                        "takes no `Auth` but its annotation does not say `security(())`"
                    }
                ));
            }
            if signature.contains(": Query<") || signature.contains(": Json<") {
                problems.push(format!(
                    "{name}: `{handler}` takes axum's `Query` or `Json`, whose rejections are \
                     not in the error envelope; use `ApiQuery` or `ApiJson`"
                ));
            }
            for (extractor, needs) in [("ApiJson<", "request_body"), ("ApiQuery<", "params(")] {
                let Some(at) = signature.find(extractor) else {
                    continue;
                };
                let rest = &signature[at + extractor.len()..];
                let ty = rest.split(['>', ',']).next().unwrap_or_default().trim();
                let documented = attribute
                    .find(needs)
                    .is_some_and(|at| attribute[at..].contains(ty));
                if !documented {
                    problems.push(format!(
                        "{name}: `{handler}` takes `{extractor}{ty}>` but its annotation has no \
                         `{needs}` naming `{ty}`"
                    ));
                }
            }
        }
    }
    assert!(
        n_handlers > 10,
        "found only {n_handlers} annotated handlers"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The `#[utoipa::path(…)]` attributes in `text`, each with its function's signature (from
/// the name to the body's `{`).
fn annotated_handlers(text: &str) -> Vec<(&str, &str)> {
    let mut handlers = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[utoipa::path(") {
        rest = &rest[at..];
        let Some(fn_at) = rest.find("fn ") else {
            break;
        };
        let attribute = &rest[..fn_at];
        let signature = &rest[fn_at + "fn ".len()..];
        let signature = &signature[..signature.find('{').unwrap_or(signature.len())];
        handlers.push((attribute, signature));
        rest = &rest[fn_at..];
    }
    handlers
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn openapi() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

/// Every operation of the document as (`GET`, path, operation), by path, then method.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                operations.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    operations.sort_by(|left, right| (&left.1, &left.0).cmp(&(&right.1, &right.0)));
    operations
}

fn parameters<'a>(operation: &'a Value, location: &str) -> Vec<&'a Value> {
    operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|parameter| parameter["in"] == location)
        .collect()
}

fn text_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default().trim()
}

/// The code an error answer's description starts with: "`not_found`: …".
fn error_code(description: &str) -> Option<&str> {
    let rest = description.strip_prefix('`')?;
    let (code, rest) = rest.split_once('`')?;
    rest.starts_with(':').then_some(code)
}

/// Source text without its comment lines, so that a route in a doc example is not read.
fn code_of(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The (`GET`, path) pairs of the `.route("…", get(…).post(…))` calls in `text`.
fn routes_in(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut routes = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let args = rest.trim_start();
        let Some(args) = args.strip_prefix('"') else {
            return Err(format!(
                "a `.route(` whose path is not a string literal: {}",
                args.lines().next().unwrap_or_default()
            ));
        };
        let (path, args) = args.split_once('"').ok_or("an unterminated route path")?;
        let mut depth = 1;
        let end = args
            .char_indices()
            .find(|(_, ch)| {
                match ch {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(idx, _)| idx)
            .ok_or_else(|| format!("the `.route(\"{path}\", …)` call does not end"))?;
        let methods = method_calls(&args[..end]);
        if methods.is_empty() {
            return Err(format!(
                "`.route(\"{path}\", …)` names no method router (`get(…)`, `post(…)`, …) this \
                 check can read"
            ));
        }
        routes.extend(methods.into_iter().map(|method| (method, path.to_string())));
    }
    Ok(routes)
}

/// The methods of the method routers (`get(`, `.post(`) called in a route's handler text.
fn method_calls(text: &str) -> Vec<String> {
    let is_ident = |ch: char| ch.is_ascii_alphanumeric() || ch == '_';
    let mut methods = Vec::new();
    for (idx, _) in text.char_indices() {
        if idx > 0 && text[..idx].ends_with(is_ident) {
            continue;
        }
        let word: String = text[idx..].chars().take_while(|ch| is_ident(*ch)).collect();
        if METHODS.contains(&word.as_str())
            && text[idx + word.len()..].trim_start().starts_with('(')
        {
            methods.push(word.to_uppercase());
        }
    }
    methods
}

/// The route reference: an index, every operation, then every schema, in Markdown.
fn render(doc: &Value) -> String {
    let operations = operations(doc);
    let mut out = String::new();
    writeln!(
        out,
        "<!-- Generated from the OpenAPI document (`ApiDoc`, hub/src/api/mod.rs) by \
         `{REGENERATE}`; edit the annotations, not this section. -->\n"
    )
    .unwrap();
    out.push_str("| route | what it does |\n|---|---|\n");
    for (method, path, operation) in &operations {
        let title = format!("{method} {path}");
        writeln!(
            out,
            "| [`{title}`](#{}) | {} |",
            slug(&title),
            cell(text_of(operation, "summary"))
        )
        .unwrap();
    }
    for (method, path, operation) in &operations {
        out.push('\n');
        render_operation(&mut out, doc, method, path, operation);
    }
    out.push_str("\n## Schemas\n\nThe JSON objects the routes above take and answer.\n");
    let mut schemas: Vec<(&String, &Value)> = doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .collect();
    schemas.sort_by_key(|(name, _)| name.as_str());
    for (name, schema) in schemas {
        writeln!(out, "\n### `{name}`\n").unwrap();
        render_schema(&mut out, doc, schema);
    }
    // A blank line ends the last table before the end marker.
    out.push('\n');
    out
}

fn render_operation(out: &mut String, doc: &Value, method: &str, path: &str, operation: &Value) {
    writeln!(out, "### `{method} {path}`\n").unwrap();
    for key in ["summary", "description"] {
        let text = text_of(operation, key);
        if !text.is_empty() {
            writeln!(out, "{text}\n").unwrap();
        }
    }
    writeln!(out, "**Auth:** {}.\n", auth(doc, operation)).unwrap();
    for (location, title) in [
        ("path", "Path parameters"),
        ("query", "Query parameters"),
        ("header", "Headers"),
    ] {
        let parameters = parameters(operation, location);
        if parameters.is_empty() {
            continue;
        }
        writeln!(
            out,
            "**{title}:**\n\n| name | type | required | description |\n|---|---|---|---|"
        )
        .unwrap();
        for parameter in parameters {
            writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                text_of(parameter, "name"),
                cell(&type_of(&parameter["schema"])),
                yes_no(parameter["required"] == true),
                cell(text_of(parameter, "description")),
            )
            .unwrap();
        }
        out.push('\n');
    }
    if let Some(body) = operation.get("requestBody") {
        for (content_type, content) in body["content"].as_object().into_iter().flatten() {
            // An optional body is absent, never `null`.
            let schema = without_null(&content["schema"]);
            write!(
                out,
                "**Request body** (`{content_type}`, {}): {}",
                if body["required"] == true {
                    "required"
                } else {
                    "optional"
                },
                type_of(schema)
            )
            .unwrap();
            let description = text_of(body, "description");
            if !description.is_empty() {
                write!(out, ", {description}").unwrap();
            }
            out.push_str(".\n\n");
            let resolved = resolve(doc, schema);
            if resolved.get("properties").is_some() {
                render_fields(out, resolved);
                out.push('\n');
            }
        }
    }
    let responses: Vec<(&String, &Value)> = operation["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .collect();
    out.push_str("**Answers:**\n\n| status | body | description |\n|---|---|---|\n");
    for (status, response) in responses
        .iter()
        .filter(|(status, _)| status.as_str() < "400")
    {
        let body = match response["content"]
            .as_object()
            .and_then(|content| content.iter().next())
        {
            Some((content_type, content)) if content_type == "application/json" => {
                type_of(&content["schema"])
            }
            Some((content_type, content)) => {
                format!("{} (`{content_type}`)", type_of(&content["schema"]))
            }
            None => "none".to_string(),
        };
        writeln!(
            out,
            "| {status} | {} | {} |",
            cell(&body),
            cell(text_of(response, "description"))
        )
        .unwrap();
    }
    let errors: Vec<_> = responses
        .iter()
        .filter(|(status, _)| status.as_str() >= "400")
        .collect();
    if !errors.is_empty() {
        out.push_str("\n**Errors:**\n\n| status | code | when |\n|---|---|---|\n");
        for (status, response) in errors {
            let description = text_of(response, "description");
            let (code, when) = match error_code(description) {
                Some(code) => (
                    format!("`{code}`"),
                    description[code.len() + 3..].trim_start(),
                ),
                None => (String::new(), description),
            };
            writeln!(out, "| {status} | {code} | {} |", cell(when)).unwrap();
        }
    }
}

fn render_schema(out: &mut String, doc: &Value, schema: &Value) {
    let description = text_of(schema, "description");
    if !description.is_empty() {
        writeln!(out, "{description}\n").unwrap();
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut fields = Vec::new();
        for part in parts {
            if part.get("$ref").is_some() {
                writeln!(out, "Every field of {}, and:\n", type_of(part)).unwrap();
            } else {
                fields.push(part);
            }
        }
        for part in fields {
            render_fields(out, part);
        }
    } else if let Some(variants) = schema["oneOf"].as_array() {
        out.push_str("One of:\n");
        for variant in variants {
            match tag_of(variant) {
                Some((tag, value)) => writeln!(out, "\n`{tag}`: `{value}`\n").unwrap(),
                None => writeln!(out, "\n{}\n", type_of(variant)).unwrap(),
            }
            if variant.get("properties").is_some() {
                render_fields(out, variant);
            }
        }
    } else if schema.get("properties").is_some() {
        render_fields(out, schema);
    } else {
        writeln!(out, "{}.", capitalize(&type_of(resolve(doc, schema)))).unwrap();
    }
}

fn render_fields(out: &mut String, schema: &Value) {
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    out.push_str("| field | type | required | description |\n|---|---|---|---|\n");
    for (name, field) in schema["properties"].as_object().into_iter().flatten() {
        writeln!(
            out,
            "| `{name}` | {} | {} | {} |",
            cell(&type_of(field)),
            yes_no(required.contains(name.as_str())),
            cell(text_of(field, "description")),
        )
        .unwrap();
    }
}

/// The tag property of a variant of a tagged union: a property with a single value.
fn tag_of(variant: &Value) -> Option<(&str, &str)> {
    variant["properties"]
        .as_object()?
        .iter()
        .find_map(|(name, property)| match property["enum"].as_array() {
            Some(values) if values.len() == 1 => Some((name.as_str(), values[0].as_str()?)),
            _ => None,
        })
}

/// Who may call: the security schemes' descriptions, or none.
fn auth(doc: &Value, operation: &Value) -> String {
    let requirements = operation
        .get("security")
        .or_else(|| doc.get("security"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let anonymous = requirements.iter().any(|requirement| {
        requirement
            .as_object()
            .is_some_and(|schemes| schemes.is_empty())
    });
    let schemes: Vec<String> = requirements
        .iter()
        .flat_map(|requirement| requirement.as_object().into_iter().flatten())
        .map(|(name, _)| {
            let scheme = &doc["components"]["securitySchemes"][name];
            let description = text_of(scheme, "description");
            if description.is_empty() {
                format!("`{name}`")
            } else {
                description.to_string()
            }
        })
        .collect();
    match (schemes.is_empty(), anonymous) {
        (true, _) => "none".to_string(),
        (false, false) => schemes.join(" or "),
        (false, true) => format!("optional, {}", schemes.join(" or ")),
    }
}

/// A schema as a short type: `string`, `array of [`Step`](#step)`, `integer or null`.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[`{name}`](#{})", slug(name));
    }
    for (key, joiner) in [("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")] {
        if let Some(parts) = schema[key].as_array() {
            let mut types: Vec<String> = parts.iter().map(type_of).collect();
            // `null` reads best last: "[`Step`](#step) or null".
            types.sort_by_key(|text| text == "null");
            return types.join(joiner);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|value| match value.as_str() {
                Some(text) => format!("`{text}`"),
                None => format!("`{value}`"),
            })
            .collect();
        return values.join(" or ");
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(name) => vec![name.as_str()],
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let nullable = types.contains(&"null");
    let named: Vec<String> = types
        .iter()
        .filter(|name| **name != "null")
        .map(|name| match *name {
            "array" => format!("array of {}", type_of(&schema["items"])),
            "string" => match schema["format"].as_str() {
                Some("binary") => "bytes".to_string(),
                Some(format) => format!("string ({format})"),
                None => "string".to_string(),
            },
            "object" => match schema.get("additionalProperties") {
                Some(values) if values.is_object() => format!("map of {}", type_of(values)),
                _ => "object".to_string(),
            },
            other => other.to_string(),
        })
        .collect();
    match (named.is_empty(), nullable) {
        (true, true) => "null".to_string(),
        (true, false) => "any JSON".to_string(),
        (false, true) => format!("{} or null", named.join(" or ")),
        (false, false) => named.join(" or "),
    }
}

/// The one alternative of a `oneOf` with `null` (or the schema itself).
fn without_null(schema: &Value) -> &Value {
    let Some(parts) = schema["oneOf"].as_array() else {
        return schema;
    };
    let not_null: Vec<&Value> = parts.iter().filter(|part| part["type"] != "null").collect();
    match not_null[..] {
        [only] => only,
        _ => schema,
    }
}

/// The schema a `$ref` points to (or the schema itself).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or(reference);
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The anchor GitHub gives a heading: lower case, spaces to `-`, other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|ch| match ch {
            ' ' => Some('-'),
            ch if ch.is_alphanumeric() || ch == '-' || ch == '_' => Some(ch),
            _ => None,
        })
        .collect()
}

/// Text for a table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn yes_no(yes: bool) -> &'static str {
    if yes { "yes" } else { "no" }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
