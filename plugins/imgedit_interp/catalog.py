"""The interpolation VAEs this plugin knows: the shipped ``faces64-vae`` and
every one a user exported with ``imgedit train interp-vae``."""

from imgedit.catalog import LatentCatalog

CATALOG = LatentCatalog(
    folder="imgedit_interp",
    name="faces64-vae",
    architecture="imgedit_interp.model.FaceVAE",
    description="64x64 face VAE with a 256-d latent, for morphs (UTKFace; non-commercial research use only)",
    loader="imgedit_interp.latent:load_vae",
)
MODEL_NAME = CATALOG.name
