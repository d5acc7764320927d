from orchestrator.adapters.cli.main import main

main()
