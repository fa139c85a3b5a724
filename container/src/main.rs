//! `exchange`: the container binary, with the example app's component kinds.

// mimalloc: the message path allocates small, short-lived buffers (headers,
// frames) in bursts; glibc's allocator falls off its per-thread cache there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(exchange_container::cli::main(
        exchange_container::registry::example_registry(),
    ));
}
