from rayctl.cli.main import main

main()
