//! `exchangectl`: watch and change a running exchange network through its
//! control plane (see `exchange_container::ctl`).

fn main() {
    std::process::exit(exchange_container::ctl::main());
}
