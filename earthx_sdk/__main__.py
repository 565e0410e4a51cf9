from earthx_sdk.cli import main

raise SystemExit(main())
