//! `exchange`: the container binary, with the example app's component kinds.

fn main() {
    std::process::exit(exchange_container::cli::main(
        exchange_container::registry::example_registry(),
    ));
}
