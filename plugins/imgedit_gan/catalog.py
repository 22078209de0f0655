"""The GAN models this plugin knows: the shipped ``faces64-gan`` and every
generator a user exported with ``imgedit train gan``."""

from imgedit.catalog import LatentCatalog

CATALOG = LatentCatalog(
    folder="imgedit_gan",
    name="faces64-gan",
    architecture="imgedit_gan.model.Generator",
    description="64x64 face GAN (UTKFace; non-commercial research use only)",
    loader="imgedit_gan.sampler:load_gan",
)
MODEL_NAME = CATALOG.name
