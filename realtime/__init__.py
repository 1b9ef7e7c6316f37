"""mgr.realtime: camera/video sources, pose, the Body_25 adapter, the live loop and overlay."""
