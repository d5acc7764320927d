from orchestrator.entrypoints.cli.main import main

main()
