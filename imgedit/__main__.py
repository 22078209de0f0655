from imgedit.cli import main

main()
