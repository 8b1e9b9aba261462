fn main() -> std::process::ExitCode {
    assumed::cli::main()
}
