from imgedit.entry import main

main()
