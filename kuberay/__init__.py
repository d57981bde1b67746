"""KubeRay manifests for Dehaze Serve and the generator of the RayService's serveConfigV2."""
