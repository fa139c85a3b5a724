//! Error numbers `zmq_errno` returns: the platform's, plus libzmq's own above
//! `ZMQ_HAUSNUMERO` (zmq.h defines them there).

use libc as platform;

const ZMQ_HAUSNUMERO: i32 = crate::ZMQ_HAUSNUMERO as i32;

pub const EACCES: i32 = platform::EACCES;
pub const EADDRINUSE: i32 = platform::EADDRINUSE;
pub const EAGAIN: i32 = platform::EAGAIN;
pub const EBUSY: i32 = platform::EBUSY;
pub const ECONNREFUSED: i32 = platform::ECONNREFUSED;
pub const EFAULT: i32 = platform::EFAULT;
pub const EINTR: i32 = platform::EINTR;
pub const EHOSTUNREACH: i32 = platform::EHOSTUNREACH;
pub const EINPROGRESS: i32 = platform::EINPROGRESS;
pub const EINVAL: i32 = platform::EINVAL;
pub const EMFILE: i32 = platform::EMFILE;
pub const EMSGSIZE: i32 = platform::EMSGSIZE;
pub const ENAMETOOLONG: i32 = platform::ENAMETOOLONG;
pub const ENODEV: i32 = platform::ENODEV;
pub const ENOENT: i32 = platform::ENOENT;
pub const ENOMEM: i32 = platform::ENOMEM;
pub const ENOTCONN: i32 = platform::ENOTCONN;
pub const ENOTSOCK: i32 = platform::ENOTSOCK;
pub const EPROTO: i32 = platform::EPROTO;
pub const EPROTONOSUPPORT: i32 = platform::EPROTONOSUPPORT;
pub const ENOTSUP: i32 = platform::ENOTSUP;
pub const ENOBUFS: i32 = platform::ENOBUFS;
pub const ENETDOWN: i32 = platform::ENETDOWN;
pub const EADDRNOTAVAIL: i32 = platform::EADDRNOTAVAIL;

// libzmq's own error numbers.
pub const EFSM: i32 = ZMQ_HAUSNUMERO + 51;
pub const ENOCOMPATPROTO: i32 = ZMQ_HAUSNUMERO + 52;
pub const ETERM: i32 = ZMQ_HAUSNUMERO + 53;
pub const EMTHREAD: i32 = ZMQ_HAUSNUMERO + 54;

// What libzmq returns on platforms that lack the errno above: zmq.h's own
// numbering, read from it at build time (EFSM and the like appear there too).
mod fallback {
    use super::ZMQ_HAUSNUMERO;
    include!(concat!(env!("OUT_DIR"), "/errno_alt.rs"));
}
pub use fallback::*;
