from explain_cli.cli.app import main

main()
