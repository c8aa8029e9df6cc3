//! SPDY/3.1 framing for port forwarding (to come).
