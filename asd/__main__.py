from asd.cli import main

raise SystemExit(main())
