//! Which function a request is for: host routing (`<fn>.<ns>.fn.localhost`) or path
//! routing (`/fn/<ns>/<fn>/…`), and the gateway's own paths.

use crate::table::FunctionKey;

/// The host suffix of host-routed functions.
pub const HOST_SUFFIX: &str = ".fn.localhost";
/// The path prefix of path-routed functions.
pub const PATH_PREFIX: &str = "/fn/";

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A function, with the CGI split of the path.
    Function {
        /// The function.
        key: FunctionKey,
        /// The prefix that selected it (empty for host routing).
        script_name: String,
        /// The rest of the path, at least `/`.
        path_info: String,
    },
    /// Prometheus metrics.
    Metrics,
    /// Liveness.
    Health,
    /// A function's recent logs (loopback clients only).
    Logs(FunctionKey),
    /// Usage of a namespace's functions in a recent window (loopback clients only).
    Usage {
        /// The namespace.
        namespace: String,
    },
    /// Nothing here.
    NotFound,
}

/// Routes by host first, then by path.
pub fn route(host: Option<&str>, path: &str) -> Route {
    if let Some(key) = host.and_then(host_function) {
        return Route::Function {
            key,
            script_name: String::new(),
            path_info: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        };
    }
    match path {
        "/metrics" => return Route::Metrics,
        "/healthz" | "/readyz" => return Route::Health,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/_strata/logs/") {
        return match rest.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Route::Logs(FunctionKey::new(ns, name))
            }
            _ => Route::NotFound,
        };
    }
    if let Some(namespace) = path.strip_prefix("/_strata/usage/") {
        return if namespace.is_empty() || namespace.contains('/') {
            Route::NotFound
        } else {
            Route::Usage {
                namespace: namespace.to_string(),
            }
        };
    }
    let Some(rest) = path.strip_prefix(PATH_PREFIX) else {
        return Route::NotFound;
    };
    let mut parts = rest.splitn(3, '/');
    let (Some(namespace), Some(name)) = (parts.next(), parts.next()) else {
        return Route::NotFound;
    };
    if namespace.is_empty() || name.is_empty() {
        return Route::NotFound;
    }
    let path_info = match parts.next() {
        Some(rest) => format!("/{rest}"),
        None => "/".into(),
    };
    Route::Function {
        key: FunctionKey::new(namespace, name),
        script_name: format!("{PATH_PREFIX}{namespace}/{name}"),
        path_info,
    }
}

/// `hello.default.fn.localhost[:8080]` → default/hello.
fn host_function(host: &str) -> Option<FunctionKey> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let labels = host.strip_suffix(HOST_SUFFIX)?;
    let (name, namespace) = labels.split_once('.')?;
    if name.is_empty() || namespace.is_empty() || namespace.contains('.') {
        return None;
    }
    Some(FunctionKey::new(namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(ns: &str, name: &str, script: &str, info: &str) -> Route {
        Route::Function {
            key: FunctionKey::new(ns, name),
            script_name: script.into(),
            path_info: info.into(),
        }
    }

    #[test]
    fn host_routing_wins_and_keeps_the_whole_path() {
        assert_eq!(
            route(Some("hello.default.fn.localhost:8080"), "/a/b"),
            function("default", "hello", "", "/a/b")
        );
        assert_eq!(
            route(Some("Hello.Team.FN.localhost."), "/metrics"),
            function("team", "hello", "", "/metrics")
        );
    }

    #[test]
    fn path_routing_splits_prefix_and_rest() {
        assert_eq!(
            route(Some("127.0.0.1:8080"), "/fn/default/hello"),
            function("default", "hello", "/fn/default/hello", "/")
        );
        assert_eq!(
            route(None, "/fn/default/hello/x/y"),
            function("default", "hello", "/fn/default/hello", "/x/y")
        );
    }

    #[test]
    fn other_paths() {
        assert_eq!(route(None, "/metrics"), Route::Metrics);
        assert_eq!(route(None, "/healthz"), Route::Health);
        assert_eq!(route(None, "/fn/default"), Route::NotFound);
        assert_eq!(route(None, "/fn//x"), Route::NotFound);
        assert_eq!(route(Some("a.b.c.fn.localhost"), "/"), Route::NotFound);
        assert_eq!(
            route(None, "/_strata/logs/default/hello"),
            Route::Logs(FunctionKey::new("default", "hello"))
        );
        assert_eq!(route(None, "/"), Route::NotFound);
    }
}
