from devtools.fake_civitai.cli import main

raise SystemExit(main())
