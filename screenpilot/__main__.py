from screenpilot.cli.main import main

raise SystemExit(main())
