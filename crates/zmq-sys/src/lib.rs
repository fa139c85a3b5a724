//! libzmq 4.3.5 with CURVE, for the `zmq` crate: the same items as the
//! registry's `zmq-sys` 0.12 (which builds libzmq without libsodium, so
//! `zmq::has("curve")` is false there). The workspace puts this crate in its
//! place with `[patch.crates-io]`.
//!
//! The constants are generated from the built libzmq's `zmq.h`; the functions
//! and types below are declared from libzmq's documented C API.

#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_long, c_short, c_uchar, c_void};

// Linked for its static libsodium, which libzmq's CURVE calls into.
extern crate libsodium_sys;

include!(concat!(env!("OUT_DIR"), "/constants.rs"));

pub mod errno;

/// A socket's file descriptor, as `zmq_pollitem_t` carries it.
#[cfg(unix)]
pub type RawFd = std::os::unix::io::RawFd;

/// A message: 64 opaque bytes, pointer-aligned, initialised and freed by libzmq.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct zmq_msg_t {
    pub __: [c_uchar; 64],
}

impl Default for zmq_msg_t {
    fn default() -> Self {
        zmq_msg_t { __: [0; 64] }
    }
}

/// One entry of `zmq_poll`: a socket, or a plain file descriptor if `socket` is null.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct zmq_pollitem_t {
    pub socket: *mut c_void,
    pub fd: c_int,
    pub events: c_short,
    pub revents: c_short,
}

impl Default for zmq_pollitem_t {
    fn default() -> Self {
        zmq_pollitem_t {
            socket: std::ptr::null_mut(),
            fd: 0,
            events: 0,
            revents: 0,
        }
    }
}

/// Frees the data of a message made with `zmq_msg_init_data`.
pub type zmq_free_fn = Option<unsafe extern "C" fn(data: *mut c_void, hint: *mut c_void)>;

extern "C" {
    pub fn zmq_errno() -> c_int;
    pub fn zmq_strerror(errnum: c_int) -> *const c_char;
    pub fn zmq_version(major: *mut c_int, minor: *mut c_int, patch: *mut c_int);
    pub fn zmq_has(capability: *const c_char) -> c_int;

    pub fn zmq_ctx_new() -> *mut c_void;
    pub fn zmq_ctx_term(context: *mut c_void) -> c_int;
    pub fn zmq_ctx_set(context: *mut c_void, option: c_int, optval: c_int) -> c_int;
    pub fn zmq_ctx_get(context: *mut c_void, option: c_int) -> c_int;

    pub fn zmq_msg_init(msg: *mut zmq_msg_t) -> c_int;
    pub fn zmq_msg_init_size(msg: *mut zmq_msg_t, size: usize) -> c_int;
    pub fn zmq_msg_init_data(
        msg: *mut zmq_msg_t,
        data: *mut c_void,
        size: usize,
        ffn: zmq_free_fn,
        hint: *mut c_void,
    ) -> c_int;
    pub fn zmq_msg_send(msg: *mut zmq_msg_t, socket: *mut c_void, flags: c_int) -> c_int;
    pub fn zmq_msg_recv(msg: *mut zmq_msg_t, socket: *mut c_void, flags: c_int) -> c_int;
    pub fn zmq_msg_close(msg: *mut zmq_msg_t) -> c_int;
    pub fn zmq_msg_data(msg: *mut zmq_msg_t) -> *mut c_void;
    pub fn zmq_msg_size(msg: *const zmq_msg_t) -> usize;
    pub fn zmq_msg_more(msg: *const zmq_msg_t) -> c_int;
    pub fn zmq_msg_gets(msg: *const zmq_msg_t, property: *const c_char) -> *const c_char;

    pub fn zmq_socket(context: *mut c_void, kind: c_int) -> *mut c_void;
    pub fn zmq_close(socket: *mut c_void) -> c_int;
    pub fn zmq_setsockopt(
        socket: *mut c_void,
        option: c_int,
        optval: *const c_void,
        optvallen: usize,
    ) -> c_int;
    pub fn zmq_getsockopt(
        socket: *mut c_void,
        option: c_int,
        optval: *mut c_void,
        optvallen: *mut usize,
    ) -> c_int;
    pub fn zmq_bind(socket: *mut c_void, endpoint: *const c_char) -> c_int;
    pub fn zmq_connect(socket: *mut c_void, endpoint: *const c_char) -> c_int;
    pub fn zmq_unbind(socket: *mut c_void, endpoint: *const c_char) -> c_int;
    pub fn zmq_disconnect(socket: *mut c_void, endpoint: *const c_char) -> c_int;
    pub fn zmq_recv(socket: *mut c_void, buf: *mut c_void, len: usize, flags: c_int) -> c_int;
    pub fn zmq_socket_monitor(socket: *mut c_void, endpoint: *const c_char, events: c_int)
        -> c_int;

    pub fn zmq_poll(items: *mut zmq_pollitem_t, nitems: c_int, timeout: c_long) -> c_int;
    pub fn zmq_proxy(frontend: *mut c_void, backend: *mut c_void, capture: *mut c_void) -> c_int;
    pub fn zmq_proxy_steerable(
        frontend: *mut c_void,
        backend: *mut c_void,
        capture: *mut c_void,
        control: *mut c_void,
    ) -> c_int;

    pub fn zmq_z85_encode(dest: *mut c_char, data: *const u8, size: usize) -> *mut c_char;
    pub fn zmq_z85_decode(dest: *mut u8, string: *const c_char) -> *mut u8;
    pub fn zmq_curve_keypair(z85_public_key: *mut c_char, z85_secret_key: *mut c_char) -> c_int;
}
