// What the views' forms do when submitted: the store's action, never the browser's own submit (which would reload
// the page).

/** An `onsubmit` handler that stops the browser's submit and runs `action` instead. */
export function onSubmit(action: () => unknown): (event: SubmitEvent) => void {
  return (event) => {
    event.preventDefault();
    void action();
  };
}
