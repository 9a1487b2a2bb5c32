//! URL paths to API calls, following TF Serving's two regexes (http_rest_api_handler.cc):
//!
//! - POST `(?i)/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)`
//! - GET  `(?i)/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?`
//!
//! Parsed by hand rather than with a regex engine (not a dependency), segment by segment, with
//! TF's error texts: anything that does not fit is `Malformed request: <METHOD> <path>`.

use axum::http::Method;

use crate::repository::VersionRequest;

use super::reply::RestError;

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// GetModelStatus. TF ignores a version label here (it only looks at a version number), so
    /// a label yields every version, and so does ours.
    Status { model: String, version: Option<i64> },
    Metadata { model: String, version: VersionRequest },
    Predict { model: String, version: VersionRequest },
    /// `:classify` / `:regress` (tf.Example input).
    Examples { model: String, version: VersionRequest, verb: Verb },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    Classify,
    Regress,
}

impl Route {
    pub(super) fn model(&self) -> &str {
        match self {
            Route::Status { model, .. }
            | Route::Metadata { model, .. }
            | Route::Predict { model, .. }
            | Route::Examples { model, .. } => model,
        }
    }

    /// The `API` metric label: the URL verb, as TF labels REST requests.
    pub(super) fn api(&self) -> &'static str {
        match self {
            Route::Status { .. } => "status",
            Route::Metadata { .. } => "metadata",
            Route::Predict { .. } => "predict",
            Route::Examples { verb: Verb::Classify, .. } => "classify",
            Route::Examples { verb: Verb::Regress, .. } => "regress",
        }
    }
}

/// Which version a path names, before conversion.
enum PathVersion<'p> {
    Latest,
    Number(&'p str),
    Label(&'p str),
}

pub(super) fn parse(method: &Method, path: &str) -> Result<Route, RestError> {
    let malformed = || RestError::invalid(format!("Malformed request: {method} {path}"));
    let rest = strip_prefix_ci(path, "/v1/models").ok_or_else(malformed)?;
    if *method == Method::POST {
        let target = rest.strip_prefix('/').ok_or_else(malformed)?;
        let (target, verb) = target.split_once(':').ok_or_else(malformed)?;
        let segments: Vec<&str> = target.split('/').collect();
        let (name, version) = match segments.as_slice() {
            [name] => (*name, PathVersion::Latest),
            [name, kind, value] => (*name, version_segment(kind, value).ok_or_else(malformed)?),
            _ => return Err(malformed()),
        };
        if !is_segment(name) || !is_segment(verb) {
            return Err(malformed());
        }
        let model = decode(name).ok_or_else(malformed)?;
        let version = version_request(version, &malformed)?;
        return Ok(match verb.to_ascii_lowercase().as_str() {
            "predict" => Route::Predict { model, version },
            "classify" => Route::Examples { model, version, verb: Verb::Classify },
            "regress" => Route::Examples { model, version, verb: Verb::Regress },
            _ => return Err(malformed()),
        });
    }
    if *method == Method::GET {
        if rest.is_empty() {
            return Err(RestError::invalid("Missing model name in request."));
        }
        let target = rest.strip_prefix('/').ok_or_else(malformed)?;
        let mut segments: Vec<&str> = target.split('/').collect();
        let metadata = segments.len() > 1 && segments.last().is_some_and(|s| s.eq_ignore_ascii_case("metadata"));
        if metadata {
            segments.pop();
        }
        let (name, version) = match segments.as_slice() {
            [name] => (*name, PathVersion::Latest),
            [name, kind, value] => (*name, version_segment(kind, value).ok_or_else(malformed)?),
            _ => return Err(malformed()),
        };
        if !is_segment(name) {
            return Err(malformed());
        }
        let model = decode(name).ok_or_else(malformed)?;
        let version = version_request(version, &malformed)?;
        return Ok(if metadata {
            Route::Metadata { model, version }
        } else {
            let version = match version {
                VersionRequest::Specific(v) => Some(v),
                VersionRequest::Latest | VersionRequest::Label(_) => None,
            };
            Route::Status { model, version }
        });
    }
    Err(malformed())
}

/// `versions/<n>` or `labels/<l>`; the value is checked later so a bad number gets its own
/// message.
fn version_segment<'p>(kind: &str, value: &'p str) -> Option<PathVersion<'p>> {
    if !is_segment(value) {
        return None;
    }
    if kind.eq_ignore_ascii_case("versions") {
        Some(PathVersion::Number(value))
    } else if kind.eq_ignore_ascii_case("labels") {
        Some(PathVersion::Label(value))
    } else {
        None
    }
}

fn version_request(version: PathVersion<'_>, malformed: &dyn Fn() -> RestError) -> Result<VersionRequest, RestError> {
    Ok(match version {
        PathVersion::Latest => VersionRequest::Latest,
        PathVersion::Number(text) => match text.parse::<i64>() {
            Ok(v) if text.bytes().all(|b| b.is_ascii_digit()) => VersionRequest::Specific(v),
            _ => return Err(RestError::invalid(format!("Failed to convert version: {text} to numeric."))),
        },
        PathVersion::Label(text) => VersionRequest::Label(decode(text).ok_or_else(malformed)?),
    })
}

/// TF's `[^/:]+`: non-empty, without the separators.
fn is_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains([':', '/'])
}

fn strip_prefix_ci<'p>(s: &'p str, prefix: &str) -> Option<&'p str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Percent-decodes a path segment (TF URL-decodes model names and labels). `None` for a broken
/// escape or a result that is not UTF-8.
fn decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Result<Route, String> {
        parse(&Method::GET, path).map_err(|e| e.to_string())
    }

    fn post(path: &str) -> Result<Route, String> {
        parse(&Method::POST, path).map_err(|e| e.to_string())
    }

    fn status(model: &str, version: Option<i64>) -> Route {
        Route::Status { model: model.into(), version }
    }

    #[test]
    fn get_routes() {
        assert_eq!(get("/v1/models/m"), Ok(status("m", None)));
        assert_eq!(get("/v1/models/m/versions/3"), Ok(status("m", Some(3))));
        assert_eq!(get("/v1/models/m/labels/stable"), Ok(status("m", None)));
        assert_eq!(get("/V1/Models/m/VERSIONS/3"), Ok(status("m", Some(3))));
        assert_eq!(get("/v1/models/m/metadata"), Ok(Route::Metadata { model: "m".into(), version: VersionRequest::Latest }));
        assert_eq!(
            get("/v1/models/m/versions/2/metadata"),
            Ok(Route::Metadata { model: "m".into(), version: VersionRequest::Specific(2) })
        );
        assert_eq!(
            get("/v1/models/m/labels/canary/metadata"),
            Ok(Route::Metadata { model: "m".into(), version: VersionRequest::Label("canary".into()) })
        );
        // The name alone may be "metadata", as the regex's greedy name group allows.
        assert_eq!(get("/v1/models/metadata"), Ok(status("metadata", None)));
        assert_eq!(get("/v1/models/my%20model"), Ok(status("my model", None)));
    }

    #[test]
    fn post_routes() {
        assert_eq!(post("/v1/models/m:predict"), Ok(Route::Predict { model: "m".into(), version: VersionRequest::Latest }));
        assert_eq!(
            post("/v1/models/m/versions/7:PREDICT"),
            Ok(Route::Predict { model: "m".into(), version: VersionRequest::Specific(7) })
        );
        assert_eq!(
            post("/v1/models/m/labels/a%2Db:predict"),
            Ok(Route::Predict { model: "m".into(), version: VersionRequest::Label("a-b".into()) })
        );
        assert_eq!(post("/v1/models/m:classify"), Ok(Route::Examples { model: "m".into(), version: VersionRequest::Latest, verb: Verb::Classify }));
        assert_eq!(post("/v1/models/m:regress").map(|r| r.api()), Ok("regress"));
    }

    #[test]
    fn errors_use_tf_texts() {
        assert_eq!(get("/v1/models"), Err("Missing model name in request.".into()));
        assert_eq!(get("/v1/models/m/versions/x"), Err("Failed to convert version: x to numeric.".into()));
        assert_eq!(post("/v1/models/m/versions/-1:predict"), Err("Failed to convert version: -1 to numeric.".into()));
        assert_eq!(
            post("/v1/models/m/versions/99999999999999999999:predict"),
            Err("Failed to convert version: 99999999999999999999 to numeric.".into())
        );
        for path in ["/v1/models/", "/v1/models/m/", "/v1/models/m:predict", "/v1/models/m/extra/x/y", "/v1/modelsx", "/v1/other"] {
            assert_eq!(get(path), Err(format!("Malformed request: GET {path}")), "{path}");
        }
        for path in ["/v1/models/m", "/v1/models/m:explain", "/v1/models/:predict", "/v1/models/m/x/1:predict", "/v1/models/m:predict:x"] {
            assert_eq!(post(path), Err(format!("Malformed request: POST {path}")), "{path}");
        }
        assert_eq!(
            parse(&Method::PUT, "/v1/models/m").map_err(|e| e.to_string()),
            Err("Malformed request: PUT /v1/models/m".into())
        );
        assert_eq!(get("/v1/models/bad%zz"), Err("Malformed request: GET /v1/models/bad%zz".into()));
    }
}
