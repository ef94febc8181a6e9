from cartreg.cli.main import main

main()
