//! exchange's protobuf IDL, compiled by prost from `idl/**/*.proto`.
//!
//! - [`exchange::v1`]: the envelope (the header of every message).
//! - [`exchange::v1::control`]: control-plane messages (status).
//! - [`kv::v1`], [`feed::v1`]: the example app's messages.
//!
//! This crate holds generated types only; the runtime turns an
//! [`exchange::v1::Envelope`] into its own header type and back.
//!
//! ```
//! use exchange_idl::kv::v1::Get;
//! use prost::Message as _;
//! let bytes = Get { key: "post/1".into() }.encode_to_vec();
//! assert_eq!(Get::decode(bytes.as_slice()).unwrap().key, "post/1");
//! ```

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// The exchange protocol.
pub mod exchange {
    /// Version 1 of the protocol.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/exchange.v1.rs"));
        /// Control-plane messages.
        pub mod control {
            include!(concat!(env!("OUT_DIR"), "/exchange.v1.control.rs"));
        }
        /// Recordings of every input each node took (`exchange dev --record`).
        pub mod record {
            include!(concat!(env!("OUT_DIR"), "/exchange.v1.record.rs"));
        }
        /// What nodes tell each other over discovery (member metadata).
        pub mod discovery {
            include!(concat!(env!("OUT_DIR"), "/exchange.v1.discovery.rs"));
        }
    }
}

/// The example app's key-value store.
pub mod kv {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/kv.v1.rs"));
    }
}

/// The example app's social feed.
pub mod feed {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/feed.v1.rs"));
    }
}
