//! SPDY/3.1 as Kubernetes streams over it (`kubectl port-forward`): [`frame`] encodes
//! and decodes frames, [`compress`] keeps the zlib header streams with the SPDY/3
//! dictionary, [`window`] does flow-control accounting, and [`session`] runs the server
//! side of a connection ([`dispatch`] handles what the peer sends). Nothing here knows about port forwarding.

pub mod compress;
pub mod dispatch;
pub mod frame;
pub mod session;
pub mod window;

pub use frame::{Frame, Headers};
pub use session::{Config, FlowControl, Incoming, Stream, StreamError, StreamReader, StreamWriter};
