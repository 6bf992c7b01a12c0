fn main() -> std::process::ExitCode {
    tailguard::cli::main()
}
