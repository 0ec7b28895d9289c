from scalectl.entry import main

main()
