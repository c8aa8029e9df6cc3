//! The CGI contract for WASI preview 1 modules (as WAGI defines it): the request arrives as
//! environment variables and standard input, the response leaves on standard output as
//! header lines, a blank line and the body. Any language that targets WASI can serve HTTP
//! this way.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION};
use http::{HeaderMap, Method, StatusCode};

/// The request facts a CGI program sees.
#[derive(Debug)]
pub struct CgiRequest<'a> {
    /// Request method.
    pub method: &'a Method,
    /// The path prefix that selected the function (`/fn/default/hello`, or empty for host routing).
    pub script_name: &'a str,
    /// The path below the prefix (`/greet/bob`), at least `/`.
    pub path_info: &'a str,
    /// The query string without `?`.
    pub query: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Body length in bytes.
    pub content_length: usize,
    /// The client's address.
    pub remote_addr: &'a str,
    /// The host the request named.
    pub server_name: &'a str,
    /// The gateway's port.
    pub server_port: u16,
}

/// The environment for one invocation: the CGI/1.1 meta-variables and one `HTTP_*` per
/// request header (`Proxy` left out, as httpoxy advises).
pub fn environment(request: &CgiRequest<'_>) -> Vec<(String, String)> {
    let mut env = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_SOFTWARE".into(), "strata".into()),
        ("SERVER_PROTOCOL".into(), "HTTP/1.1".into()),
        ("SERVER_NAME".into(), request.server_name.into()),
        ("SERVER_PORT".into(), request.server_port.to_string()),
        ("REQUEST_METHOD".into(), request.method.as_str().into()),
        ("SCRIPT_NAME".into(), request.script_name.into()),
        ("PATH_INFO".into(), request.path_info.into()),
        ("QUERY_STRING".into(), request.query.into()),
        ("REMOTE_ADDR".into(), request.remote_addr.into()),
        ("CONTENT_LENGTH".into(), request.content_length.to_string()),
    ];
    let uri = if request.query.is_empty() {
        format!("{}{}", request.script_name, request.path_info)
    } else {
        format!(
            "{}{}?{}",
            request.script_name, request.path_info, request.query
        )
    };
    env.push(("REQUEST_URI".into(), uri));
    if let Some(content_type) = request
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        env.push(("CONTENT_TYPE".into(), content_type.into()));
    }
    for (name, value) in request.headers {
        if name == CONTENT_TYPE || name == CONTENT_LENGTH || name.as_str() == "proxy" {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        let key = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        match env.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            None => env.push((key, value.into())),
        }
    }
    env
}

/// Why a program's output is not a CGI response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgiError {
    /// Output ended before the blank line that ends the headers.
    #[error(
        "the function's output has no header block: CGI output starts with headers such as \
         `Content-Type: text/plain`, then a blank line, then the body"
    )]
    NoHeaders,
    /// A header line is malformed.
    #[error("the function wrote a malformed CGI header line {0:?}")]
    BadHeader(String),
    /// The `Status` header is not a three-digit HTTP status.
    #[error("the function wrote an invalid CGI Status {0:?}")]
    BadStatus(String),
}

/// A response parsed from CGI output.
#[derive(Debug)]
pub struct CgiResponse {
    /// Status: the `Status` header, 302 with a `Location` and no status, else 200.
    pub status: StatusCode,
    /// Headers other than `Status`.
    pub headers: HeaderMap,
    /// Everything after the blank line.
    pub body: Bytes,
}

/// Parses a program's standard output. Lines may end in `\n` or `\r\n`.
pub fn parse_output(output: Bytes) -> Result<CgiResponse, CgiError> {
    let mut headers = HeaderMap::new();
    let mut status = None;
    let mut at = 0;
    loop {
        let Some(end) = output[at..].iter().position(|&b| b == b'\n') else {
            return Err(CgiError::NoHeaders);
        };
        let raw = &output[at..at + end];
        at += end + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(CgiError::BadHeader(text.into_owned()));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            let parsed = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok());
            status = Some(parsed.ok_or_else(|| CgiError::BadStatus(value.to_string()))?);
            continue;
        }
        let header_name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| CgiError::BadHeader(text.to_string()))?;
        let header_value =
            HeaderValue::from_str(value).map_err(|_| CgiError::BadHeader(text.to_string()))?;
        headers.append(header_name, header_value);
    }
    let status = status.unwrap_or(if headers.contains_key(LOCATION) {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok(CgiResponse {
        status,
        headers,
        body: output.slice(at..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_with_status_headers_and_body() {
        let out = Bytes::from_static(
            b"Status: 201 Created\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\nhello\n",
        );
        let response = parse_output(out).unwrap();
        assert_eq!(response.status, StatusCode::CREATED);
        assert_eq!(response.headers["content-type"], "text/plain");
        assert_eq!(response.headers["x-a"], "1");
        assert_eq!(&response.body[..], b"hello\n");
    }

    #[test]
    fn location_without_status_redirects() {
        let response = parse_output(Bytes::from_static(b"Location: /x\n\n")).unwrap();
        assert_eq!(response.status, StatusCode::FOUND);
        assert!(response.body.is_empty());
    }

    #[test]
    fn output_without_headers_is_an_error() {
        assert_eq!(
            parse_output(Bytes::from_static(b"hello world")).unwrap_err(),
            CgiError::NoHeaders
        );
        assert!(matches!(
            parse_output(Bytes::from_static(b"hello world\n\n")),
            Err(CgiError::BadHeader(_))
        ));
        assert!(matches!(
            parse_output(Bytes::from_static(b"Status: abc\n\n")),
            Err(CgiError::BadStatus(_))
        ));
    }

    #[test]
    fn environment_carries_request_and_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-trace-id", HeaderValue::from_static("abc"));
        headers.insert("proxy", HeaderValue::from_static("evil"));
        let env = environment(&CgiRequest {
            method: &Method::POST,
            script_name: "/fn/default/hello",
            path_info: "/a/b",
            query: "x=1",
            headers: &headers,
            content_length: 3,
            remote_addr: "127.0.0.1",
            server_name: "localhost",
            server_port: 8080,
        });
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("QUERY_STRING"), Some("x=1"));
        assert_eq!(get("CONTENT_TYPE"), Some("application/json"));
        assert_eq!(get("CONTENT_LENGTH"), Some("3"));
        assert_eq!(get("HTTP_X_TRACE_ID"), Some("abc"));
        assert_eq!(get("REQUEST_URI"), Some("/fn/default/hello/a/b?x=1"));
        assert_eq!(get("HTTP_PROXY"), None);
        assert_eq!(get("HTTP_CONTENT_TYPE"), None);
    }
}
