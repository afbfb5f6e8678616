from aurigraph_stream.cli import main

raise SystemExit(main())
