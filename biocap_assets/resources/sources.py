"""Where the input data comes from: the configured URLs, or the demo world.

Each source that is not configured falls back to the synthetic demo world,
built on first use by the ``demo_world`` worker under ``$BIOCAP_HOME/demo``.
Assets put the returned ``label`` in their metadata, so a demo run is never
mistaken for real data.
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from biocap_assets.demo.world import DEMO_SEED, DemoWorld, is_complete
from biocap_assets.resources.launcher import LauncherResource
from biocap_assets.settings import WIKIPEDIA_API_URL

DEMO_LABEL = "demo (synthetic)"


@dataclass(frozen=True)
class Source:
    url: str
    label: str

    @property
    def is_demo(self) -> bool:
        return self.label == DEMO_LABEL


class SourcesResource(dg.ConfigurableResource):
    demo_root: str = Field(description="folder of the demo world ($BIOCAP_HOME/demo)")
    catalog_url: str | None = Field(default=None, description="BIOCAP_CATALOG_URL")
    shards_url: str | None = Field(default=None, description="BIOCAP_SHARDS_URL")
    wiki_api_url: str = Field(default=WIKIPEDIA_API_URL, description="BIOCAP_WIKI_API_URL")
    demo_seed: int = DEMO_SEED

    def demo_world(
        self, context: dg.AssetExecutionContext, launcher: LauncherResource
    ) -> DemoWorld:
        """The demo world, generated through the launcher if it is not complete yet."""
        root = Path(self.demo_root)
        if not is_complete(root, self.demo_seed):
            context.log.info(f"building the demo world under {root}")
            launcher.run(context, "demo_world", extras={"out": str(root), "seed": self.demo_seed})
            if not is_complete(root, self.demo_seed):
                raise dg.Failure(f"the demo_world worker finished but {root} is incomplete")
        return DemoWorld(root)

    def catalog(self, context: dg.AssetExecutionContext, launcher: LauncherResource) -> Source:
        if self.catalog_url:
            return Source(self.catalog_url, f"configured (BIOCAP_CATALOG_URL={self.catalog_url})")
        return Source(str(self.demo_world(context, launcher).catalog), DEMO_LABEL)
