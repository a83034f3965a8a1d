"""Names fixed by the NIH ChestX-ray14 release, shared by every stage."""

# Shown wherever a prediction is: the report, the app, `cxr14 predict` and `cxr14 --help`.
DISCLAIMER = (
    "cxr14 is a research tool. It is not a medical device, its output is not medical advice, "
    "and it must not be used to diagnose or treat anyone."
)

# The 14 findings in the order of Wang et al. 2017 (and CheXNet); column names as in Data_Entry.
FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "No Finding"
SPLITS = ("train", "val", "test")
NIH = "nih"  # ChestX-ray14 as a collection: `train.data`, results/datasets/nih/

# Metadata files of the release, besides the Data_Entry table named in the config.
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
BBOX_LIST = "BBox_List_2017.csv"
# Google's expert labels (Majkowska et al. 2020), published apart from the NIH release.
EXPERT_LABELS = "google2019_nih-chest-xray-labels.csv"

METADATA_HELP = (
    "The NIH metadata files are published beside the images at "
    "https://nihcc.app.box.com/v/ChestXray-NIHCC (also on Kaggle as 'nih-chest-xrays/data'). "
    "Download {name} and put it in {folder} (or set 'mirror' to a folder or URL that holds the files)."
)


def box_name(index) -> str:
    """File name of archive `index` on the NIH Box share (a wildcard name passes through: "{nn}")."""
    return f"images_{index:0>2}.tar.gz"


def kaggle_name(index: int) -> str:
    """File name of archive `index` in the Kaggle copy of the dataset."""
    return f"images_{index:03d}.zip"
